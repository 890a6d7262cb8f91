/**
 * 405 Method Not Allowed for the paths the API serves, with the `Allow` header (RFC 9110):
 * every route is recorded as it is added (an onRoute hook), so a request the router did not
 * match is told apart — a path served under other methods (405, or 204 for OPTIONS) — from a
 * path that does not exist (404).
 */
import type { RouteOptions } from 'fastify';

export class MethodIndex {
  private readonly byPath = new Map<string, { re: RegExp; methods: Set<string> }>();

  /** The onRoute hook. */
  readonly add = (route: RouteOptions): void => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    let entry = this.byPath.get(route.url);
    if (!entry) {
      entry = { re: patternOf(route.url), methods: new Set() };
      this.byPath.set(route.url, entry);
    }
    for (const m of methods) entry.methods.add(m.toUpperCase());
  };

  /** The methods a path is served under, for `Allow` (OPTIONS included); empty when no route matches it. */
  allowed(path: string): string[] {
    const out = new Set<string>();
    for (const { re, methods } of this.byPath.values()) if (re.test(path)) for (const m of methods) out.add(m);
    if (out.size === 0) return [];
    out.add('OPTIONS');
    return [...out].sort();
  }
}

/** A route URL (`/docs/static/*`, `/x/:id`) as a regular expression over concrete paths. */
function patternOf(url: string): RegExp {
  const src = url
    .split(/(\*|:[A-Za-z0-9_]+)/)
    .map((part) => (part === '*' ? '.*' : part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${src}$`);
}
