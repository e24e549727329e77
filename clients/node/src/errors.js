/**
 * The one error type of the client: service errors (from the JSON envelope) and client-side
 * failures (timeout, abort, network, unreadable response) alike.
 */

/** Client-side codes; service codes (VALIDATION_ERROR, UNAUTHORIZED, ...) come from the envelope. */
export const ClientErrorCode = Object.freeze({
  TIMEOUT: 'TIMEOUT',
  ABORTED: 'ABORTED',
  NETWORK_ERROR: 'NETWORK_ERROR',
  INVALID_RESPONSE: 'INVALID_RESPONSE',
});

export class MlServiceError extends Error {
  /**
   * @param {object} init
   * @param {string} init.code      stable UPPER_SNAKE code (service or client-side)
   * @param {string} init.message   human sentence
   * @param {Array<Record<string, unknown>>} [init.details]  per-field problems (422) or extra facts
   * @param {number|null} [init.status]  HTTP status; null when no response arrived
   * @param {string|null} [init.requestId]  the service's meta.request_id, else the id we sent
   * @param {number|null} [init.retryAfterMs]  from a Retry-After header, when there was one
   * @param {number} [init.attempts]  how many HTTP attempts were made
   * @param {unknown} [init.cause]
   */
  constructor({ code, message, details = [], status = null, requestId = null, retryAfterMs = null, attempts = 1, cause }) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'MlServiceError';
    this.code = code;
    this.details = Array.isArray(details) ? details : [];
    this.status = status;
    this.requestId = requestId;
    this.retryAfterMs = retryAfterMs;
    this.attempts = attempts;
  }

  /** True for failures the client may retry by itself (429, 503). */
  get retryable() {
    return this.status === 429 || this.status === 503;
  }

  toJSON() {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      details: this.details,
      status: this.status,
      requestId: this.requestId,
    };
  }
}

/** Type guard usable across package copies (checks the name, not the prototype). */
export function isMlServiceError(value) {
  return value instanceof MlServiceError || (value instanceof Error && value.name === 'MlServiceError' && typeof value.code === 'string');
}
