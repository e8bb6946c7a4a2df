/**
 * Optional bearer tokens on the OTLP receivers (BRIDGE_AUTH_TOKENS): HTTP `Authorization: Bearer
 * …` and gRPC `authorization` metadata, as the Collector's `bearertokenauth` extension sends
 * them. Several tokens are accepted at once, so one can be rotated without a gap. Tokens are
 * compared by their SHA-256 digests with `timingSafeEqual`: the time taken says nothing about
 * how much of a token matched, nor its length.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export const AUTH_MESSAGE = 'a bearer token is required (Authorization: Bearer <token>), and this one is not accepted';

export interface Authenticator {
  /** Whether tokens are required at all. */
  readonly required: boolean;
  /** Whether an `Authorization` header (or gRPC metadata value) carries an accepted token. */
  accepts(authorization: string | undefined): boolean;
}

const digest = (token: string) => createHash('sha256').update(token, 'utf8').digest();

export function createAuthenticator(tokens: readonly string[]): Authenticator {
  const accepted = tokens.map(digest);
  return {
    required: accepted.length > 0,
    accepts(authorization) {
      if (accepted.length === 0) return true;
      const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
      if (!m) return false;
      const offered = digest(m[1]!);
      // Every token is compared, so the time does not say which one matched.
      let ok = false;
      for (const token of accepted) ok = timingSafeEqual(token, offered) || ok;
      return ok;
    },
  };
}
