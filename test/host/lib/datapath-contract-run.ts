// Runs the datapath contract script (test/fakes/datapath-contract.ts) through BpfDatapath on two veths (a0, a1)
// in a namespace of ours (kmt-dp-<tag>-*) and through FakeDatapath told about the same interfaces and whether
// this kernel has TCX (kernelHasTcx). Used by the host test and by the VM datapath suite; cleans up after itself.
import { BpfDatapath } from '../../../src/datapath/bpf-datapath.js';
import {
  DATAPATH_STEPS,
  runDatapathScript,
  type ContractEnv,
  type ContractOutcome,
} from '../../fakes/datapath-contract.js';
import { FakeDatapath } from '../../fakes/fake-datapath.js';
import { addNetns, delNetns, kernelHasTcx, netnsPath, OBJ_DIR, privateBpffsRoot, run, sh } from './kernel.js';

export interface ContractRuns {
  tcx: boolean;
  real: ContractOutcome[];
  fake: ContractOutcome[];
}

export async function runDatapathContract(tag: string): Promise<ContractRuns> {
  const ns = `kmt-dp-${tag}-${process.pid}`;
  const path = netnsPath(ns);
  const tcx = kernelHasTcx();
  const real = new BpfDatapath();
  addNetns(ns);
  try {
    sh(
      ns,
      'ip link add a0 type veth peer name b0; ip link add a1 type veth peer name b1; ip link set a0 up; ip link set a1 up',
    );
    const list = JSON.parse(run('ip', ['-j', 'link', 'show'], ns)) as { ifname: string; ifindex: number }[];
    const indexes = new Map(list.map((l) => [l.ifname, l.ifindex]));
    const fake = new FakeDatapath({
      interfaces: list.map((l) => ({ name: l.ifname, ifindex: l.ifindex, netns: path })),
      tcx,
    });
    const env = (removeInterface: (name: string) => void): ContractEnv => ({
      netns: path,
      bpffsRoot: privateBpffsRoot(tag),
      objDir: OBJ_DIR,
      ifindex: (name) => indexes.get(name) ?? -1,
      removeInterface: (name) => Promise.resolve(removeInterface(name)),
    });
    return {
      tcx,
      real: await runDatapathScript(
        real,
        env((name) => void run('ip', ['link', 'del', name], ns)),
        DATAPATH_STEPS,
      ),
      fake: await runDatapathScript(
        fake,
        env((name) => fake.removeInterface(name, path)),
        DATAPATH_STEPS,
      ),
    };
  } finally {
    await real.uninstall().catch(() => undefined);
    delNetns(ns);
  }
}
