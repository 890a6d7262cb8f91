/**
 * GET /v1/stream: the websocket of live records (protocol and seam in ../stream/session.ts).
 * A plain HTTP GET gets 426 with the protocol in a sentence.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiConfig } from '../config.ts';
import { errorBody } from '../../core/ops.ts';
import { StreamSession } from '../stream/session.ts';
import { STREAM_CHANNELS } from '../stream/records.ts';

export const STREAM_DESCRIPTION = `Websocket (upgrade this GET). Send {"op":"subscribe","channels":[${STREAM_CHANNELS.map((c) => `"${c}"`).join(',')}],"instruments":[{"exchange":"binance","symbol":"BTC/USDT"}],"since":"2024-01-31T00:00:00Z"}; instruments omitted = all (live only); with since the database is replayed first, then records continue live from Kafka with no gap and no duplicate ({"type":"live"} marks the switch). Messages: {"type":"data","channel","replay","data":[rows]}, {"type":"error","message","field"}; {"op":"ping"} answers {"type":"pong"}.`;

export const streamRoutes: FastifyPluginAsync<{ config: ApiConfig }> = async (app, { config }) => {
  app.route({
    method: 'GET',
    url: '/v1/stream',
    schema: {
      summary: 'Live records over a websocket, optionally replayed from a time',
      description: STREAM_DESCRIPTION,
      tags: ['stream'],
      response: { 426: { $ref: 'Error#' } },
    },
    handler: async (_req, reply) => reply.code(426).header('upgrade', 'websocket').send(errorBody(426, `/v1/stream is a websocket: connect with Upgrade: websocket. ${STREAM_DESCRIPTION}`)),
    wsHandler: (socket) => {
      new StreamSession(socket, { hub: app.hub, db: app.db, config: config.stream, events: app.events });
    },
  });
};
