export * from './receiver';
export * from './http';
export * from './grpc';
export * from './auth';
export * from './health';
