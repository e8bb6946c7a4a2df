/** The privacy switches, now @ccbridge/privacy: re-exported for the processor and this package's users. */
export * from '@ccbridge/privacy';
