/**
 * KeyBudget is shared by the tables of one store: how many keys they hold together, and
 * the most they may hold.
 */
export interface KeyBudget {
  size: number
  readonly maxKeys: number
  /** evictElsewhere drops one key from another table (called when this one has none). */
  evictElsewhere(): void
}

const INITIAL_SLOTS = 16

/** SMALL: the largest 30-bit number (epoch and placed stay small integers). */
const SMALL = 0x3fffffff

/**
 * KeyTable maps keys to slots of fixed-width numeric state (`width` numbers per slot in
 * `data`) or to state objects (`objects`, when width is 0). It keeps the keys in
 * least-recently-used order using the Map's own insertion order: a key read after more than
 * an eighth of the table's size of new keys arrived since it was last placed is moved to
 * the end. So a hot key costs no reordering, and the key evicted first has not
 * been used for at least seven eighths of the table's turnover. No timers: keys whose state
 * carries no information are swept a few at a time as new keys arrive.
 */
export class KeyTable<S = never> {
  readonly width: number
  /** map: key -> slot. Insertion order is recency order (oldest first). */
  readonly map = new Map<string, number>()
  /** data: width numbers per slot; all zeros is "no state". */
  data: Float64Array
  /** objects: per-slot state when width is 0. */
  readonly objects: (S | undefined)[] = []
  /**
   * epoch counts the slots freed so far: while it stands, every slot holds the key it held
   * (a caller that remembered a key's slot may use it without the Map; see `at`). It is
   * -1 for good once the count passes 30 bits (remembered slots are then not used).
   */
  epoch = 0
  /** stamps: the count of keys added (mod 2^32) when each slot's key was last placed. */
  private stamps: Uint32Array
  private placements = 0
  private used = 0
  private readonly free: number[] = []
  private evictCursor: Iterator<string> | undefined
  private sweepCursor: Iterator<[string, number]> | undefined
  private readonly budget: KeyBudget
  /** lastKey, lastSlot: the key found last and its slot, so a hot key skips the Map. */
  private lastKey: string | undefined
  private lastSlot = -1
  /** lastPlacements: `placements` when lastKey was found. */
  private lastPlacements = 0
  private readonly isEmpty: (slot: number, now: number) => boolean

  constructor(width: number, budget: KeyBudget, isEmpty: (slot: number, now: number) => boolean) {
    this.width = width
    this.budget = budget
    this.isEmpty = isEmpty
    this.data = new Float64Array(INITIAL_SLOTS * width)
    this.stamps = new Uint32Array(INITIAL_SLOTS)
  }

  get size(): number {
    return this.map.size
  }

  /** find returns the key's slot, marking it used, or -1 when the key has no state. */
  find(key: string): number {
    // The key found last, with no key added since: its place in recency order stands.
    if (key === this.lastKey && this.placements === this.lastPlacements) return this.lastSlot
    const slot = this.map.get(key)
    if (slot === undefined) return -1
    // Age counts only keys added since, so a hot key (or a table with no newcomers) is
    // never reordered, and moves are bounded by the arrival of new keys.
    if ((this.placements - this.stamps[slot]) >>> 0 > this.map.size >>> 3) this.renew(key, slot)
    this.lastKey = key
    this.lastSlot = slot
    this.lastPlacements = this.placements
    return slot
  }

  /**
   * at is find for a key whose slot the caller remembers, found when the table's `epoch`
   * was `seen` and its `placed` was `placed`: with no slot freed since, that slot still
   * holds the key, and is answered (marked used) without the Map; else find answers. With
   * no key added since either, the key's place in recency order was settled then, and
   * stands. (A slot is not checked by its key: keeping each slot's key would cost every key
   * of the store a few bytes more, and a table whose keys come and go often gains little.)
   */
  at(key: string, slot: number, seen: number, placed: number): number {
    if (seen !== this.epoch || seen < 0 || slot < 0) return this.find(key)
    if (placed === (this.placements & SMALL)) return slot
    if ((this.placements - this.stamps[slot]) >>> 0 > this.map.size >>> 3) this.renew(key, slot)
    return slot
  }

  /** placed: the count of keys added, as `at` takes it (30 bits). */
  get placed(): number {
    return this.placements & SMALL
  }

  /** renew moves a key to the recent end of the recency order (apart from find, to keep find small). */
  private renew(key: string, slot: number): void {
    this.map.delete(key)
    this.map.set(key, slot)
    this.stamps[slot] = this.placements
  }

  /** add places a key that has no state yet and returns its zeroed slot. */
  add(key: string, now: number): number {
    this.sweep(now)
    if (this.budget.size >= this.budget.maxKeys) {
      if (this.map.size > 0) this.evictOldest()
      else this.budget.evictElsewhere()
    }
    let slot = this.free.pop()
    if (slot === undefined) {
      if (this.used === this.stamps.length) this.grow()
      slot = this.used++
    }
    this.map.set(key, slot)
    this.stamps[slot] = this.placements
    this.placements = (this.placements + 1) >>> 0
    this.budget.size++
    return slot
  }

  /** delete forgets a key's state. */
  delete(key: string): void {
    const slot = this.map.get(key)
    if (slot === undefined) return
    this.map.delete(key)
    this.release(slot)
  }

  /** forEach visits every slot (for policy changes). */
  forEach(visit: (slot: number) => void): void {
    for (const slot of this.map.values()) visit(slot)
  }

  /** evictOldest drops the least recently used key. */
  evictOldest(): void {
    for (;;) {
      let next = this.evictCursor?.next()
      if (next === undefined || next.done) {
        this.evictCursor = this.map.keys()
        next = this.evictCursor.next()
        if (next.done) return
      }
      const slot = this.map.get(next.value)
      if (slot === undefined) continue
      this.map.delete(next.value)
      this.release(slot)
      return
    }
  }

  /** sweep examines up to two keys, round robin, and drops those whose state is empty. */
  private sweep(now: number): void {
    for (let n = 0; n < 2; n++) {
      let next = this.sweepCursor?.next()
      if (next === undefined || next.done) {
        this.sweepCursor = this.map.entries()
        next = this.sweepCursor.next()
        if (next.done) return
      }
      const [key, slot] = next.value
      if (this.map.get(key) === slot && this.isEmpty(slot, now)) {
        this.map.delete(key)
        this.release(slot)
      }
    }
  }

  private release(slot: number): void {
    if (slot === this.lastSlot) {
      this.lastKey = undefined
      this.lastSlot = -1
    }
    this.data.fill(0, slot * this.width, (slot + 1) * this.width)
    if (this.width === 0) this.objects[slot] = undefined
    if (this.epoch >= 0) this.epoch = this.epoch < SMALL ? this.epoch + 1 : -1
    this.free.push(slot)
    this.budget.size--
  }

  private grow(): void {
    const slots = this.stamps.length * 2
    const data = new Float64Array(slots * this.width)
    data.set(this.data)
    this.data = data
    const stamps = new Uint32Array(slots)
    stamps.set(this.stamps)
    this.stamps = stamps
  }
}
