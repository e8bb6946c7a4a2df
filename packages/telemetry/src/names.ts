/** The service name the bridge's own telemetry carries (and by which its own spans are known). */
export const SERVICE_NAME = 'claude-code-llmflow-bridge';
