export * from './keys';
export * from './connect';
export * from './scripts';
