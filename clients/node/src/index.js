export { MlClient, createClient, ROUTES, VERSION, parseRetryAfter } from './client.js';
export { MlServiceError, ClientErrorCode, isMlServiceError } from './errors.js';
