/**
 * Handles for a libbpf object, its programs, maps and links. Each handle is
 * released by `Symbol.dispose`, which closes descriptors but never detaches
 * a pinned link.
 *
 * @module
 */

import { cString } from "./libc.ts";
import { check, checkPointer, libbpf } from "./libbpf.ts";

/** A BPF ELF object opened from memory, before or after loading. */
export class BpfObject implements Disposable {
  #pointer: Deno.PointerObject | null;
  /** Keeps the ELF bytes alive: libbpf reads them until the object closes. */
  readonly #bytes: Uint8Array;

  private constructor(pointer: Deno.PointerObject, bytes: Uint8Array) {
    this.#pointer = pointer;
    this.#bytes = bytes;
  }

  /**
   * Opens an object from the bytes of a BPF ELF file.
   *
   * @throws {LibbpfError} when libbpf rejects the ELF file
   */
  static open(bytes: Uint8Array): BpfObject {
    const copy = bytes.slice();
    const pointer = checkPointer(
      libbpf().bpf_object__open_mem(copy, BigInt(copy.length), null),
      "open BPF object",
    );
    return new BpfObject(pointer, copy);
  }

  /**
   * Creates the maps that were not reused, and loads the programs into the
   * kernel, which runs the verifier on them.
   *
   * @throws {LibbpfError} when a map cannot be created or a program is
   * rejected; libbpf logs the verifier output at warning level
   */
  load(): void {
    check(libbpf().bpf_object__load(this.#live()), "load BPF object");
  }

  /** @throws {LibbpfError} when the object has no program `name` */
  program(name: string): BpfProgram {
    const pointer = checkPointer(
      libbpf().bpf_object__find_program_by_name(this.#live(), cString(name)),
      `find BPF program "${name}"`,
    );
    return new BpfProgram(pointer, name);
  }

  /** @throws {LibbpfError} when the object has no map `name` */
  map(name: string): BpfMap {
    const pointer = checkPointer(
      libbpf().bpf_object__find_map_by_name(this.#live(), cString(name)),
      `find BPF map "${name}"`,
    );
    return new BpfMap(pointer, name);
  }

  /** Closes the object with its map and program descriptors. */
  [Symbol.dispose](): void {
    if (this.#pointer === null) return;
    libbpf().bpf_object__close(this.#pointer);
    this.#pointer = null;
  }

  #live(): Deno.PointerObject {
    if (this.#pointer === null) {
      throw new Error("Cannot use BPF object: it is closed");
    }
    return this.#pointer;
  }
}

/** A program of a {@linkcode BpfObject}, valid while the object is open. */
export class BpfProgram {
  readonly #pointer: Deno.PointerObject;
  readonly name: string;

  constructor(pointer: Deno.PointerObject, name: string) {
    this.#pointer = pointer;
    this.name = name;
  }

  /** Descriptor of the loaded program. */
  get fd(): number {
    return check(
      libbpf().bpf_program__fd(this.#pointer),
      `get descriptor of BPF program "${this.name}"`,
    );
  }

  /**
   * Attaches the program to the network namespace open as `netnsFd`.
   *
   * @throws {LibbpfError} when the kernel refuses the attachment
   */
  attachNetns(netnsFd: number): BpfLink {
    const pointer = checkPointer(
      libbpf().bpf_program__attach_netns(this.#pointer, netnsFd),
      `attach BPF program "${this.name}" to the network namespace`,
    );
    return new BpfLink(pointer);
  }
}

/** A map of a {@linkcode BpfObject}, valid while the object is open. */
export class BpfMap {
  readonly #pointer: Deno.PointerObject;
  readonly name: string;

  constructor(pointer: Deno.PointerObject, name: string) {
    this.#pointer = pointer;
    this.name = name;
  }

  /** Descriptor of the created or reused map. */
  get fd(): number {
    return check(
      libbpf().bpf_map__fd(this.#pointer),
      `get descriptor of BPF map "${this.name}"`,
    );
  }

  /**
   * Makes the object use the existing map `fd` instead of creating one at
   * load. libbpf duplicates `fd`, so the caller still owns it.
   *
   * @throws {LibbpfError} when `fd` is not a map
   */
  reuseFd(fd: number): void {
    check(
      libbpf().bpf_map__reuse_fd(this.#pointer, fd),
      `reuse pinned BPF map "${this.name}"`,
    );
  }
}

/** A BPF link created by libbpf. */
export class BpfLink implements Disposable {
  #pointer: Deno.PointerObject | null;

  constructor(pointer: Deno.PointerObject) {
    this.#pointer = pointer;
  }

  /** Descriptor of the link. */
  get fd(): number {
    return check(libbpf().bpf_link__fd(this.#live()), "get link descriptor");
  }

  /**
   * Pins the link at `path` in a bpffs, so it outlives the process.
   *
   * @throws {LibbpfError} when the path exists or is not on a bpffs
   */
  pin(path: string): void {
    check(
      libbpf().bpf_link__pin(this.#live(), cString(path)),
      `pin BPF link at "${path}"`,
    );
  }

  /**
   * Closes the link's descriptor. A pinned link stays attached, and an
   * unpinned one is detached once no descriptor refers to it.
   */
  [Symbol.dispose](): void {
    if (this.#pointer === null) return;
    libbpf().bpf_link__destroy(this.#pointer);
    this.#pointer = null;
  }

  #live(): Deno.PointerObject {
    if (this.#pointer === null) {
      throw new Error("Cannot use BPF link: it is closed");
    }
    return this.#pointer;
  }
}
