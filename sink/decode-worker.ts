/** The decoding worker thread of sink/decode.ts: decodes what it is sent, answers by id. */
import { parentPort, workerData } from 'node:worker_threads';
import { createCodec } from '../core/avro.ts';
import { messageOf } from '../core/errors.ts';
import { decodeValues, type DecodeReply, type DecodeRequest } from './decode.ts';

const port = parentPort!;
const codec = createCodec((workerData as { kafka: { topicPrefix: string; schemaRegistryUrl?: string } }).kafka);

port.on('message', (req: DecodeRequest) => {
  decodeValues(codec, req.target, req.packed).then(
    (block) => port.postMessage({ id: req.id, block } satisfies DecodeReply, [block.ends.buffer, block.rowOf.buffer, block.times.buffer] as ArrayBuffer[]),
    (e: unknown) => port.postMessage({ id: req.id, error: messageOf(e) } satisfies DecodeReply),
  );
});
