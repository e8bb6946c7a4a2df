export * from './types';
export * from './attributes';
export * from './codec';
export * from './scan';
export * from './grpc';
