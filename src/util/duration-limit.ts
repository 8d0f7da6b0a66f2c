// The longest duration any flag accepts, for the daemon and kmeshctl alike: timers beyond 2^31-1 ms (~24.8 days)
// fire at once in Node, which would turn a long interval into a busy loop. A week is far above any sensible
// value and far below that limit.
export const MAX_DURATION_SECONDS = 7 * 24 * 3600;
