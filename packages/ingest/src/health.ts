/**
 * Health routes and every role's own port (/metrics, /healthz, /readyz). Kept apart from the
 * receivers (`@ccbridge/ingest/health`): a worker serves these and loads no receiver.
 */
import type http from 'node:http';
import express, { type Request, type Response } from 'express';

export interface HealthOptions {
  /** Resolves true while Redis answers. */
  ready: () => Promise<boolean>;
  /** The ports this process listens on, once bound (so a port of 0 can be read back). */
  ports?: () => Record<string, number>;
}

/** GET /healthz (the process is up, and the ports it listens on) and GET /readyz (200 only while Redis answers). */
export function healthRouter(options: HealthOptions): express.Router {
  const router = express.Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', ...(options.ports && { ports: options.ports() }) });
  });
  router.get('/readyz', async (_req, res) => {
    const ready = await options.ready().catch(() => false);
    res
      .status(ready ? 200 : 503)
      .json({ status: ready ? 'ready' : 'unavailable', redis: ready ? 'ok' : 'unreachable' });
  });
  return router;
}

/** The answer for a path no route takes. */
export function notFound(req: Request, res: Response): void {
  res.status(404).json({ code: 5, message: `no route for ${req.method} ${req.path}` });
}

/** Every role's own port: the health routes and GET /metrics (the Prometheus text format). */
export function createAdminApp(
  health: HealthOptions,
  metrics: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(healthRouter(health));
  app.get('/metrics', (req, res) => metrics(req, res));
  app.use(notFound);
  return app;
}
