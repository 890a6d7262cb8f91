import pino, { type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs to stderr, so stdout stays free for command output (CSV, progress). */
export const rootLogger: Logger = pino(
  {
    level: process.env.LOG_LEVEL ?? (process.env.VITEST ? 'warn' : 'info'),
    base: { app: 'tickflow' },
    timestamp: pino.stdTimeFunctions.isoTime,
  },
  pino.destination(2),
);

export function logger(part: string): Logger {
  return rootLogger.child({ part });
}
