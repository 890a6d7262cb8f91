/**
 * The shard group's membership (shard.ts runMembership) in a worker thread: its heartbeats and
 * fencing clock run on an event loop that a gateway busy serving hundreds of instruments does
 * not hold up. Posts MembershipMessage to the gateway's thread; `{t: 'leave'}` leaves the group.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { messageOf } from '../core/errors.ts';
import { runMembership, type MembershipJob, type MembershipMessage } from './shard.ts';

const port = parentPort!;
const post = (m: MembershipMessage) => port.postMessage(m);
runMembership(workerData as MembershipJob, post).then(
  (m) => {
    post({ t: 'joined' });
    port.on('message', (x: { t?: string }) => {
      if (x.t !== 'leave') return;
      void m.leave().finally(() => {
        post({ t: 'left' });
        port.close();
      });
    });
  },
  (e: unknown) => post({ t: 'error', error: messageOf(e) }),
);
