/**
 * The turns a session has in LLMFlow, from the roots the worker drew: each says whether it holds
 * all of its turn (the lifecycle's verdict, `claude_code.interaction.complete` on the root).
 */
export interface DrawnTurn {
  session: string;
  traceId: string;
  /** Undefined when the root does not say (senders without event.sequence). */
  complete?: boolean;
}

/** A root as the closer drew it (claude-events' StoredTurn has these fields). */
export interface DrawnRoot {
  session?: string;
  traceId: string;
  verdict: { complete?: boolean };
}

/** The drawn turns of roots with a session. */
export const drawnTurns = (roots: DrawnRoot[]): DrawnTurn[] =>
  roots.flatMap((r) =>
    r.session
      ? [
          {
            session: r.session,
            traceId: r.traceId,
            ...(r.verdict.complete !== undefined && { complete: r.verdict.complete }),
          },
        ]
      : [],
  );
