// The Pareto front of (size, score) points: smaller is better for size, larger for score.
// A point is on the front when no other point is at least as small and strictly better, or smaller
// and at least as good.
export function paretoFront(points) {
  const sorted = [...points].sort((a, b) => a.x - b.x || b.y - a.y);
  const front = [];
  let best = -Infinity;
  for (const p of sorted) {
    if (p.y > best) {
      front.push(p);
      best = p.y;
    }
  }
  return front;
}
