// Protocol numbers and the SQLSTATEs pgfloat answers with; names follow PostgreSQL's own.

export const PROTOCOL_MAJOR_3 = 3;
export const SSL_REQUEST_CODE = 80877103; // 1234 << 16 | 5679
export const GSSENC_REQUEST_CODE = 80877104; // 1234 << 16 | 5680
export const CANCEL_REQUEST_CODE = 80877102; // 1234 << 16 | 5678

// PostgreSQL's MAX_STARTUP_PACKET_LENGTH: the most a startup packet may hold after its length
// word (so 10004 bytes in all); anything larger is refused before it is buffered.
export const MAX_STARTUP_PACKET_LENGTH = 10000;

// The newest 3.x minor version the servers pgfloat fronts speak: PostgreSQL 15 knows 3.0 only.
// It is what pgfloat's own refusals name, as the server would have.
export const SERVER_PROTOCOL_LATEST_MINOR = 0;

export const SqlState = {
  protocolViolation: '08P01',
  connectionFailure: '08006',
  sqlClientUnableToEstablishConnection: '08001',
  cannotConnectNow: '57P03',
  adminShutdown: '57P01',
  featureNotSupported: '0A000',
  tooManyConnections: '53300',
  invalidAuthorizationSpecification: '28000',
  invalidParameterValue: '22023',
} as const;

export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState];
