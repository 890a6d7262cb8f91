/**
 * Resolves with the signal when SIGINT or SIGTERM first arrives, for commands that run until
 * stopped. Later signals don't kill the process mid-shutdown: `npm start` forwards the terminal's
 * SIGINT that the process got already, so the second one is expected; a third forces an exit.
 */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let count = 0;
    const on = (sig: NodeJS.Signals) => {
      count++;
      if (count === 1) resolve(sig);
      else if (count === 2) process.stderr.write(`tickflow: ${sig} again: stopping already (a third one forces an exit)\n`);
      else process.exit(130);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
