import type { Decision } from "../core/decision.js"
import { StoreError, TollgateError } from "../errors.js"
import { limitInto, type Sink, type SinkNamespace } from "../stores/sink.js"
import type { MaybePromise, Namespace } from "../stores/store.js"

export interface BreakerOptions {
  /** failures: consecutive store failures that open the circuit; default 5. */
  failures: number
  /** cooldownMs: how long the circuit stays open before one probe call is let through. */
  cooldownMs: number
}

export interface GuardOptions {
  /** timeoutMs: budget for one store call. */
  timeoutMs: number
  /** maxInFlight: store calls outstanding at once; beyond it calls fail at once. */
  maxInFlight: number
  /** breaker: circuit breaker settings, or false for none. */
  breaker: BreakerOptions | false
}

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === "function"
}

/** A store failure, as opposed to a typed refusal (bad argument, unsupported operation). */
function isStoreFailure(error: unknown): boolean {
  return !(error instanceof TollgateError) || error instanceof StoreError
}

// Where a guarded call is.
/** WAITING: the store has not answered and the call has not timed out. */
const WAITING = 0
/** ANSWERED: the store answered (before or after the timeout). */
const ANSWERED = 1
/** TIMED_OUT: its caller got the timeout; the store still holds the call. */
const TIMED_OUT = 2

/**
 * GuardedCall: one store call under a guard, and the sink the store answers it into. The
 * answer goes on to `to` unless the call timed out first.
 */
class GuardedCall<T> implements Sink<T> {
  /** deadline: performance.now() time at which the call times out; 0 until stamped. */
  deadline = 0
  state: number = WAITING
  readonly guard: StoreGuard
  /** to: the caller's sink; dropped once it has its answer. */
  to: Sink<T> | undefined
  /** probe: the one call let through a circuit that has cooled down. */
  readonly probe: boolean

  constructor(guard: StoreGuard, to: Sink<T>, probe: boolean) {
    this.guard = guard
    this.to = to
    this.probe = probe
  }

  resolve(value: T): void {
    const to = this.to
    if (this.guard.answered(this, false) && to !== undefined) {
      this.to = undefined
      to.resolve(value)
    }
  }

  reject(error: unknown): void {
    const to = this.to
    if (this.guard.answered(this, isStoreFailure(error)) && to !== undefined) {
      this.to = undefined
      to.reject(error)
    }
  }
}

/**
 * StoreGuard protects callers from an asynchronous store that is slow or gone: every call
 * is bounded by a timeout, at most `maxInFlight` calls are outstanding (so a stalled store
 * cannot grow memory without bound), and after `breaker.failures` consecutive failures the
 * circuit opens: calls fail at once for `cooldownMs`, then a single probe call goes
 * through; its success closes the circuit. Every refusal is a StoreError, which the
 * limiter hands to `onStoreError`. Times here are real (performance.now): store I/O
 * happens in real time.
 *
 * Timeouts cost a call no clock reading and no timer: calls join a list in the order they
 * start, and one sweeping timer, every SWEEPS_PER_TIMEOUT-th of the timeout, stamps the
 * calls that started since its last run with a deadline (that sweep's time plus the
 * timeout: never early) and fails those past theirs. Since every call gets the same
 * timeout, the list is in deadline order and a sweep stops at the first call still in
 * time. A call times out between `timeout` and `timeout` plus two sweep periods after it
 * started (plus any delay of the event loop).
 */
export class StoreGuard {
  readonly options: GuardOptions
  /** inFlight: calls the store has not answered, timed-out ones included. */
  private inFlight = 0
  /** waiting: calls the store has not answered that have not timed out either. */
  private waiting = 0
  private failures = 0
  private openUntil = 0
  private probing = false
  /**
   * calls: from `head` on, the calls in the order they started. Calls that end at the head
   * leave at once; the others stay until the head reaches them or a sweep drops them.
   */
  private calls: GuardedCall<unknown>[] = []
  private head = 0
  /** stamped: calls before this index have their deadline. */
  private stamped = 0
  private sweeper: ReturnType<typeof setInterval> | undefined
  private readonly every: number

  constructor(options: GuardOptions) {
    this.options = options
    this.every = Math.min(MAX_SWEEP_MS, Math.max(1, options.timeoutMs / SWEEPS_PER_TIMEOUT))
  }

  /** state: "closed" (normal), "open" (failing fast) or "half-open" (one probe allowed). */
  get state(): "closed" | "open" | "half-open" {
    if (this.openUntil === 0) return "closed"
    return performance.now() < this.openUntil ? "open" : "half-open"
  }

  get outstanding(): number {
    return this.inFlight
  }

  /** run starts one store call under the guard. */
  run<T>(start: () => MaybePromise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const call = this.admit<T>({ resolve, reject })
      if (call === undefined) return
      let value: MaybePromise<T>
      try {
        value = start()
      } catch (error) {
        call.reject(error)
        return
      }
      if (isPromise(value)) {
        value.then(
          (v) => call.resolve(v),
          (error: unknown) => call.reject(error),
        )
      } else call.resolve(value)
    })
  }

  /**
   * runDirect is run for a store that may answer at once (a wrapper such as localLeases
   * deciding locally): such an answer is handed back as it is, with no promise and no
   * effect on the breaker, since the store was not asked. Otherwise it is run.
   */
  runDirect<T>(start: () => MaybePromise<T>): MaybePromise<T> {
    if (this.openUntil !== 0 || this.inFlight >= this.options.maxInFlight) return this.run(start)
    let value: MaybePromise<T>
    try {
      value = start()
    } catch (error) {
      return this.run(() => {
        throw error
      })
    }
    if (!isPromise(value)) return value
    const started = value
    return this.run(() => started)
  }

  /** limitInto runs `ns`'s fast path under the guard: the answer goes to `to`. */
  limitInto(
    ns: SinkNamespace,
    to: Sink<Decision>,
    key: string,
    cost: number,
    now: number,
    requestId: string | undefined,
  ): void {
    const call = this.admit(to)
    if (call === undefined) return
    try {
      ns[limitInto](call, key, cost, now, requestId)
    } catch (error) {
      call.reject(error)
    }
  }

  /**
   * wrap returns a Namespace whose asynchronous calls all go through this guard; an answer
   * the namespace gives at once (a wrapper deciding locally) comes back as it is.
   */
  wrap(ns: Namespace): Namespace {
    const wrapped: Namespace = {
      limit: (key, cost, now, requestId) =>
        this.runDirect(() => ns.limit(key, cost, now, requestId)),
      peek: (key, now) => this.runDirect(() => ns.peek(key, now)),
      reset: (key) => this.runDirect(() => ns.reset(key)),
      reserve: (key, cost, now, maxWaitMs) =>
        this.runDirect(() => ns.reserve(key, cost, now, maxWaitMs)),
      cancel: (key, cost, executeAt, now) =>
        this.runDirect(() => ns.cancel(key, cost, executeAt, now)),
      release: (key, leaseId, now) => this.runDirect(() => ns.release(key, leaseId, now)),
      adjust: (key, delta, now) => this.runDirect(() => ns.adjust(key, delta, now)),
      setPolicy: (policy, now) => ns.setPolicy(policy, now),
      size: () => ns.size(),
    }
    const direct = (ns as Partial<SinkNamespace>)[limitInto]
    if (typeof direct === "function") {
      const fast = ns as SinkNamespace
      ;(wrapped as SinkNamespace)[limitInto] = (to, key, cost, now, requestId) =>
        this.limitInto(fast, to, key, cost, now, requestId)
    }
    return wrapped
  }

  /**
   * admit lets a call start, or refuses it (circuit open, too many in flight) by failing
   * `to` with a StoreError, and returns undefined.
   */
  private admit<T>(to: Sink<T>): GuardedCall<T> | undefined {
    let probe = false
    if (this.openUntil !== 0) {
      if (performance.now() < this.openUntil || this.probing) {
        to.reject(new StoreError("store unavailable: circuit open after repeated failures"))
        return undefined
      }
      probe = true
      this.probing = true
    }
    if (this.inFlight >= this.options.maxInFlight) {
      if (probe) this.probing = false
      to.reject(
        new StoreError(
          `store overloaded: ${this.inFlight} calls in flight (maxInFlight ${this.options.maxInFlight})`,
        ),
      )
      return undefined
    }
    const call = new GuardedCall(this, to, probe)
    this.inFlight++
    this.waiting++
    this.calls.push(call as GuardedCall<unknown>)
    if (this.sweeper === undefined) {
      this.sweeper = setInterval(this.sweep, this.every)
      this.sweeper.unref?.()
    }
    return call
  }

  /**
   * answered ends a call the store answered (`failed`: with a store failure). It tells
   * whether the answer still goes to the caller: not after a timeout, nor a second time.
   * (Called by GuardedCall only.)
   */
  answered(call: GuardedCall<unknown>, failed: boolean): boolean {
    if (call.state === ANSWERED) return false
    this.inFlight--
    if (call.state === TIMED_OUT) {
      call.state = ANSWERED
      return false
    }
    call.state = ANSWERED
    this.waiting--
    this.settled(failed, call.probe)
    // Calls mostly end in the order they started: drop ended calls from the head of the
    // list as they end, so that they die young (a sweep would find them much later).
    const calls = this.calls
    let head = this.head
    if (calls[head] === call) {
      do calls[head++] = ENDED
      while (head < calls.length && calls[head].state !== WAITING)
      if (head === calls.length) {
        calls.length = 0
        head = 0
        this.stamped = 0
      } else if (this.stamped < head) this.stamped = head
      this.head = head
    }
    return true
  }

  private settled(failed: boolean, probe: boolean): void {
    if (probe) this.probing = false
    if (!failed) {
      this.failures = 0
      this.openUntil = 0
      return
    }
    this.failures++
    const breaker = this.options.breaker
    if (breaker !== false && (probe || this.failures >= breaker.failures)) {
      this.openUntil = performance.now() + breaker.cooldownMs
    }
  }

  /** sweep stamps the calls started since the last sweep and times out those past their deadline. */
  private readonly sweep = (): void => {
    const now = performance.now()
    let calls = this.calls
    const deadline = now + this.options.timeoutMs
    for (let i = this.stamped; i < calls.length; i++) calls[i].deadline = deadline
    this.stamped = calls.length
    let head = this.head
    while (head < calls.length) {
      const call = calls[head]
      if (call.state === WAITING) {
        // Calls that start while this loop fails others have no deadline yet.
        if (call.deadline === 0 || call.deadline > now) break
        this.timeOut(call)
      }
      calls[head++] = ENDED
    }
    if (this.waiting === 0) {
      // Nothing left to time out: drop the list and the timer until the next call.
      this.calls = []
      this.head = 0
      this.stamped = 0
      clearInterval(this.sweeper)
      this.sweeper = undefined
      return
    }
    // Answered calls behind one still waiting stay in the list: drop them once they are
    // most of it, so that its length follows the calls actually waiting.
    if (calls.length - head > 2 * this.waiting + 1024) {
      const kept: GuardedCall<unknown>[] = []
      let stamped = 0
      for (let i = head; i < calls.length; i++) {
        if (calls[i].state !== WAITING) continue
        kept.push(calls[i])
        if (i < this.stamped) stamped++
      }
      calls = kept
      this.calls = kept
      this.stamped = stamped
      head = 0
    } else if (head > 1024 && head * 2 > calls.length) {
      this.calls = calls.slice(head)
      this.stamped -= head
      head = 0
    }
    this.head = head
  }

  private timeOut(call: GuardedCall<unknown>): void {
    call.state = TIMED_OUT
    this.waiting--
    this.settled(true, call.probe)
    const to = call.to
    call.to = undefined
    to?.reject(new StoreError(`store call timed out after ${this.options.timeoutMs} ms`))
  }
}

/** ENDED: what takes an ended call's place at the head of the list. */
const ENDED = new GuardedCall<unknown>(
  undefined as unknown as StoreGuard,
  { resolve: () => {}, reject: () => {} },
  false,
)
ENDED.state = ANSWERED

/** SWEEPS_PER_TIMEOUT: sweeps per timeout period; a call times out at most 2/20 late. */
const SWEEPS_PER_TIMEOUT = 20

/** MAX_SWEEP_MS: the longest time between sweeps. */
const MAX_SWEEP_MS = 25
