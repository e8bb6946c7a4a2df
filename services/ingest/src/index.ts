/**
 * The ingest: the OTLP/HTTP receiver wired to the queue. Wiring only.
 */
import type { BridgeConfig } from '@ccbridge/config';
import type { Logger } from '@ccbridge/log';
import { BatchProducer, connectRedis } from '@ccbridge/queue';
import type { IngestOptions } from '@ccbridge/ingest';

export interface IngestService {
  /** What the bridge's HTTP server needs to serve the OTLP routes. */
  options: IngestOptions;
  close(): Promise<void>;
}

export function startIngest(config: BridgeConfig, redisUrl: string, log: Logger): IngestService {
  const redis = connectRedis(redisUrl, 'producer');
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  const producer = new BatchProducer(redis, { maxWaiting: config.queueMaxWaiting, attempts: config.jobAttempts });
  const options: IngestOptions = { sink: producer, maxBodyBytes: config.maxBodyBytes, log };
  return {
    options,
    async close() {
      await producer.close();
      redis.disconnect();
    },
  };
}
