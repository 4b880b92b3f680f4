// Routing rules: send clients to a listener kind by user, database or application_name patterns.

import type { RoutingRule } from '../config/schema';
import type { ListenerKind } from './routes';

export interface StartupIdentity {
  user: string;
  database: string;
  applicationName: string;
}

interface CompiledRule {
  user?: RegExp;
  database?: RegExp;
  applicationName?: RegExp;
  route: ListenerKind;
}

/** Glob patterns: `*` any run of characters, `?` one character; everything else literal. */
export function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

export class RoutingRules {
  private readonly rules: CompiledRule[];

  constructor(rules: readonly RoutingRule[]) {
    this.rules = rules.map((r) => ({
      user: r.user === undefined ? undefined : globToRegExp(r.user),
      database: r.database === undefined ? undefined : globToRegExp(r.database),
      applicationName: r.applicationName === undefined ? undefined : globToRegExp(r.applicationName),
      route: r.route,
    }));
  }

  /** The first matching rule's route, else the kind of the listener the client came in on. */
  resolve(listener: ListenerKind, who: StartupIdentity): ListenerKind {
    for (const rule of this.rules) {
      if (rule.user && !rule.user.test(who.user)) continue;
      if (rule.database && !rule.database.test(who.database)) continue;
      if (rule.applicationName && !rule.applicationName.test(who.applicationName)) continue;
      return rule.route;
    }
    return listener;
  }
}
