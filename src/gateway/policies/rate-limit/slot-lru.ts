// A fixed-capacity key → slot index in least-recently-used order. The values
// live in the caller's typed arrays, indexed by slot, so a lookup or a touch
// allocates nothing and every operation is O(1): a Map for the index and a
// doubly linked list in two Int32Arrays for the order. Inserting into a full
// table evicts the least recently used key and hands its slot, values still in
// place, to the caller (who folds them somewhere before overwriting).
import { randomBytes } from 'node:crypto';

export class SlotLru {
  readonly capacity: number;
  /** The key evicted by the last insert(), or undefined; its values are still in the returned slot. */
  evicted: string | undefined = undefined;
  /** Keys evicted since creation. */
  evictions = 0;
  readonly #index = new Map<string, number>();
  readonly #keys: string[] = [];
  readonly #prev: Int32Array;
  readonly #next: Int32Array;
  #head = -1; // most recently used
  #tail = -1; // least recently used

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.capacity = capacity;
    this.#prev = new Int32Array(capacity);
    this.#next = new Int32Array(capacity);
  }

  get size(): number {
    return this.#index.size;
  }

  /** The key's slot, made most recently used; -1 when absent. */
  find(key: string): number {
    const slot = this.#index.get(key);
    if (slot === undefined) return -1;
    if (slot !== this.#head) {
      this.#unlink(slot);
      this.#pushFront(slot);
    }
    return slot;
  }

  /** Adds an absent key as most recently used and returns its slot (see `evicted`). */
  insert(key: string): number {
    let slot: number;
    if (this.#keys.length < this.capacity) {
      slot = this.#keys.length;
      this.#keys.push(key);
      this.evicted = undefined;
    } else {
      slot = this.#tail;
      this.evicted = this.#keys[slot];
      this.#index.delete(this.evicted);
      this.#unlink(slot);
      this.#keys[slot] = key;
      this.evictions++;
    }
    this.#index.set(key, slot);
    this.#pushFront(slot);
    return slot;
  }

  #unlink(slot: number): void {
    const p = this.#prev[slot];
    const n = this.#next[slot];
    if (p === -1) this.#head = n;
    else this.#next[p] = n;
    if (n === -1) this.#tail = p;
    else this.#prev[n] = p;
  }

  #pushFront(slot: number): void {
    this.#prev[slot] = -1;
    this.#next[slot] = this.#head;
    if (this.#head !== -1) this.#prev[this.#head] = slot;
    this.#head = slot;
    if (this.#tail === -1) this.#tail = slot;
  }
}

/**
 * A seeded 32-bit string hash. The seed is secret and per instance, so a
 * client cannot choose keys that collide with another's.
 */
export function seededHash(): (key: string) => number {
  const seed = randomBytes(4).readUInt32LE(0);
  return (key) => {
    let h = seed ^ 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
  };
}

export const nextPowerOfTwo = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(2, n)));
