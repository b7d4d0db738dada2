/** Suggestions for a mistyped name ("did you mean …?"). */

/**
 * The name in `names` closest to `word` (edit distance at most a third of its length, at least
 * 1; or the one name it is a prefix of): what an operator most likely meant by a mistyped
 * command, option or setting.
 */
export function closest(word: string, names: readonly string[]): string | undefined {
  const prefixed = names.filter((n) => n.startsWith(word));
  if (word.length >= 3 && prefixed.length === 1) return prefixed[0];
  let best: { name: string; distance: number } | undefined;
  for (const name of names) {
    const distance = editDistance(word, name);
    if (!best || distance < best.distance) best = { name, distance };
  }
  const allowed = Math.max(word.length >= 3 ? 2 : 1, Math.floor(word.length / 3));
  return best && best.distance <= allowed ? best.name : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j] + 1,
        current[j - 1] + 1,
        previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length];
}
