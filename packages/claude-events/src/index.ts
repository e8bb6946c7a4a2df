export * from './events';
export * from './ids';
export * from './mapping';
export * from './interaction';
export * from './store';
export * from './processor';
