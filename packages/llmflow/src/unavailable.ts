import { BackpressureError } from '@ccbridge/errors';

/** LLMFlow cannot take anything now (down, or LLMFLOW_URL is wrong): backpressure. */
export class LlmflowUnavailableError extends BackpressureError {
  override name = 'LlmflowUnavailableError';
}
