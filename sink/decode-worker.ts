/** The decoding worker thread of sink/decode.ts: decodes what it is sent, answers by id. */
import { parentPort, workerData } from 'node:worker_threads';
import { createCodec } from '../core/avro.ts';
import { decodeValues, errorReply, type DecodeReply, type DecodeRequest } from './decode.ts';

const port = parentPort!;
const data = workerData as { kafka: { topicPrefix: string; schemaRegistryUrl?: string }; idWaitMs?: number };
const codec = createCodec(data.kafka, { idWaitMs: data.idWaitMs });

port.on('message', (req: DecodeRequest) => {
  decodeValues(codec, req.target, req.packed).then(
    (block) => port.postMessage({ id: req.id, block } satisfies DecodeReply, [block.ends.buffer, block.rowOf.buffer, block.times.buffer] as ArrayBuffer[]),
    // A failed batch keeps its code and retriable flag (a structured clone would drop the class).
    (e: unknown) => port.postMessage(errorReply(req.id, e)),
  );
});
