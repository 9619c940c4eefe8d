// Mutexes in shared memory: one Int32 each, 0 = free, 1 = held, 2 = held with sleepers.
// A contended lock spins briefly (critical sections here are a few hundred nanoseconds),
// then sleeps in Atomics.wait until the holder's unlock wakes one sleeper. Atomics.wait is
// allowed on Node's main thread as well as in workers.

const SPINS = 100

/** lock takes the mutex at `a[i]`, waiting as long as it takes. */
export function lock(a: Int32Array, i: number): void {
  if (Atomics.compareExchange(a, i, 0, 1) !== 0) lockSlow(a, i)
}

function lockSlow(a: Int32Array, i: number): void {
  for (let n = 0; n < SPINS; n++) {
    if (Atomics.load(a, i) === 0 && Atomics.compareExchange(a, i, 0, 1) === 0) return
  }
  // Mark the lock as having sleepers, so the holder's unlock wakes one of them.
  let seen = Atomics.exchange(a, i, 2)
  while (seen !== 0) {
    Atomics.wait(a, i, 2)
    seen = Atomics.exchange(a, i, 2)
  }
}

/** tryLock takes the mutex at `a[i]` if it is free, without waiting. */
export function tryLock(a: Int32Array, i: number): boolean {
  return Atomics.compareExchange(a, i, 0, 1) === 0
}

/** unlock frees the mutex at `a[i]` (held by the caller) and wakes one sleeper if any. */
export function unlock(a: Int32Array, i: number): void {
  if (Atomics.sub(a, i, 1) !== 1) {
    Atomics.store(a, i, 0)
    Atomics.notify(a, i, 1)
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4))

/**
 * backOff gives other threads a chance before attempt `n` of an operation is retried:
 * nothing for the first few attempts, then sleeps growing from 10 µs to about 1 ms.
 */
export function backOff(n: number): void {
  if (n < 4) return
  Atomics.wait(pause, 0, 0, Math.min(0.01 * 2 ** (n - 4), 1))
}
