/**
 * Timed waits that can be raced and then cleared. A leaf module (no imports), so that every room
 * of the code base, the TLS engine included, can use it.
 */

/**
 * A promise that settles with `value` after `ms`, and the disposal that clears its timer (so a
 * finished wait leaves no timer keeping the process alive).
 */
export function delay<T>(ms: number, value: T): Promise<T> & Disposable {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<T>((resolve) => timer = setTimeout(() => resolve(value), ms));
  return Object.assign(promise, { [Symbol.dispose]: () => clearTimeout(timer) });
}
