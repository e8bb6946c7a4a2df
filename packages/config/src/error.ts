/** A bad setting: names the variable, the value and what was expected. Start-up stops on it. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    value: string,
    expected: string,
  ) {
    super(`${variable}=${JSON.stringify(value)} is not valid: expected ${expected}`);
    this.name = 'ConfigError';
  }
}
