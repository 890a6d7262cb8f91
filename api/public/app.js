/* global document, window, location, WebSocket, URLSearchParams, LightweightCharts */
// The live chart: history from /v1/ohlcv (closed buckets), then the current and later buckets
// built here from the trades of /v1/stream, subscribed with `since` = the start of the current
// bucket — the server replays that bucket's trades from the database and continues live, so
// the forming candle is exact (no double counting with the history, no missed trade).
// History comes from two sources: the rollups of the trades (source=trades) and the exchange's
// own candles (source=exchange), which reach back before the first trade tickflow recorded (the
// gateways backfill them). Per bucket the candle that saw more of it, the larger volume, is drawn.
// User events of the instrument (POST /v1/events: a strategy's signals, fills, notes) are drawn as
// markers on their bars: those before the live bucket from /v1/events, the rest replayed and live
// on the same websocket (channel events).
'use strict';

const ORIGIN_MS = Date.UTC(2000, 0, 3); // the server's bucket grid: weeks start on Monday
const INTERVALS = { '1m': 60e3, '5m': 300e3, '15m': 900e3, '1h': 3600e3, '4h': 14400e3, '1d': 86400e3 };
const HISTORY_BARS = 300;
/** Fewer bars than this are drawn at this many bars' spacing, right-aligned, not stretched. */
const MIN_VISIBLE_BARS = 24;
/** Room right of the newest bar, in bars, for the next ones. */
const RIGHT_MARGIN_BARS = 2;
const NO_CANDLES = 'no candles yet for this instrument — waiting for trades';
const UP = '#26a69a';
const DOWN = '#ef5350';
const NOTE = '#d29922';
/** Markers drawn at most (the newest). */
const MAX_MARKERS = 500;

/** What the page shows, for people and for the browser test. */
const state = (window.tickflow = {
  status: 'loading',
  instrument: null,
  interval: '1m',
  bars: 0,
  /** Bars drawn from each source (live bars are built from trades). */
  sources: { trades: 0, exchange: 0 },
  updates: 0,
  trades: 0,
  last: null,
  error: null,
  /** The text over the chart, '' when none. */
  overlay: '',
  /** The time scale's width and where the first and last bars are drawn (px from its left). */
  view: null,
  /** User events of the instrument held, and the markers drawn for them ({time, position, shape, color, text, id}). */
  events: 0,
  markers: [],
});

const $ = (id) => document.getElementById(id);
const chart = LightweightCharts.createChart($('chart'), {
  autoSize: true,
  layout: { background: { color: '#0e1117' }, textColor: '#c9d1d9' },
  grid: { vertLines: { color: '#161b22' }, horzLines: { color: '#161b22' } },
  // A resize keeps the bars in view rather than the bar spacing (the page may still be laying
  // out when the history arrives).
  timeScale: { timeVisible: true, secondsVisible: false, borderColor: '#30363d', rightOffset: RIGHT_MARGIN_BARS, lockVisibleTimeRangeOnResize: true },
  rightPriceScale: { borderColor: '#30363d', scaleMargins: { top: 0.08, bottom: 0.28 } },
});
const candleSeries = chart.addSeries(LightweightCharts.CandlestickSeries, { upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN });
const volumeSeries = chart.addSeries(LightweightCharts.HistogramSeries, { priceFormat: { type: 'volume' }, priceScaleId: 'volume', lastValueVisible: false, priceLineVisible: false });
chart.priceScale('volume').applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
const markers = LightweightCharts.createSeriesMarkers(candleSeries, []);

const floorMs = (ms, width) => ms - ((((ms - ORIGIN_MS) % width) + width) % width);
const iso = (ms) => new Date(ms).toISOString();

let gen = 0; // bumps on every instrument/interval switch: stale callbacks check it
let socket = null;
let bars = new Map(); // bucket start (s) -> { time, open, high, low, close, volume, firstTs, lastTs, src: 'trades' | 'exchange' }
let liveFrom = 0; // ms: bars from here on are built from trades
let rendered = 0; // time (s) of the newest bar drawn
let userMoved = false; // the user scrolled or zoomed: the view is theirs, no more fitting
let forming = null; // { time (s), minutes: the exchange's 1m candles of that bucket } (see formingBase)
let events = new Map(); // event id -> { ts (ms), type, data }

for (const ev of ['mousedown', 'wheel', 'touchstart']) $('chart').addEventListener(ev, () => (userMoved = true), { passive: true });
chart.timeScale().subscribeVisibleLogicalRangeChange(() => updateView());

function setStatus(text) {
  state.status = text;
  renderStatus();
}

function renderStatus() {
  const text = state.status;
  const last = state.last;
  $('status').innerHTML = `${text}${last ? ` · last <span class="price">${last.close}</span> · ${state.trades} trades live` : ''}`;
}

function message(text) {
  state.overlay = text || '';
  $('message').textContent = state.overlay;
}

/** Where the first and last bars are drawn, for the browser test. */
function updateView() {
  const ts = chart.timeScale();
  const n = bars.size;
  state.view = { width: ts.width(), firstX: n ? ts.logicalToCoordinate(0) : null, lastX: n ? ts.logicalToCoordinate(n - 1) : null };
}

/**
 * Every bar in view, the first at the left edge and the newest near the right one (room for
 * the next); fewer than MIN_VISIBLE_BARS keep that spacing, right-aligned. Until the user moves
 * the view.
 */
function fit() {
  const n = bars.size;
  if (userMoved || n === 0) return;
  const to = n - 1 + RIGHT_MARGIN_BARS;
  chart.timeScale().setVisibleLogicalRange({ from: Math.min(-0.5, to - MIN_VISIBLE_BARS), to });
  updateView();
}

function countSources(list) {
  state.sources = { trades: 0, exchange: 0 };
  for (const b of list) state.sources[b.src]++;
}

function volumeBar(b) {
  return { time: b.time, value: b.volume, color: b.close >= b.open ? 'rgba(38,166,154,0.5)' : 'rgba(239,83,80,0.5)' };
}

function redrawAll() {
  const list = [...bars.values()].sort((a, b) => a.time - b.time);
  candleSeries.setData(list.map(({ time, open, high, low, close }) => ({ time, open, high, low, close })));
  volumeSeries.setData(list.map(volumeBar));
  rendered = list.length ? list[list.length - 1].time : 0;
  state.bars = list.length;
  state.last = list.length ? { ...list[list.length - 1] } : null;
  countSources(list);
  if (list.length) message('');
  updateView();
}

function draw(touched) {
  const times = [...touched].sort((a, b) => a - b);
  if (times.length && times[0] < rendered) return redrawAll(); // a late trade in an older bar
  for (const t of times) {
    const b = bars.get(t);
    candleSeries.update({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });
    volumeSeries.update(volumeBar(b));
    rendered = t;
  }
  const grew = bars.size !== state.bars;
  state.bars = bars.size;
  const last = bars.get(rendered);
  if (last) state.last = { ...last };
  if (grew) countSources(bars.values());
  message('');
  state.updates++;
  renderStatus();
  updateView();
}

/**
 * One marker per user event, on the bar of its bucket: a buy/long signal an arrow up under the
 * bar, a sell/short one an arrow down over it, anything else a dot over it; the text is the
 * event's `data.label`, else its type and side.
 */
function markerOf(id, e, width) {
  const d = e.data && typeof e.data === 'object' && !Array.isArray(e.data) ? e.data : {};
  const side = typeof d.side === 'string' ? d.side.toLowerCase() : '';
  const up = side === 'buy' || side === 'long';
  const down = side === 'sell' || side === 'short';
  const text = typeof d.label === 'string' ? d.label : side ? `${e.type} ${side}` : e.type;
  return {
    id,
    time: floorMs(e.ts, width) / 1000,
    position: up ? 'belowBar' : 'aboveBar',
    shape: up ? 'arrowUp' : down ? 'arrowDown' : 'circle',
    color: up ? UP : down ? DOWN : NOTE,
    text: text.slice(0, 40),
  };
}

function drawMarkers(width) {
  const list = [...events.entries()].sort((a, b) => a[1].ts - b[1].ts || (a[0] < b[0] ? -1 : 1)).slice(-MAX_MARKERS);
  state.markers = list.map(([id, e]) => markerOf(id, e, width));
  state.events = events.size;
  markers.setMarkers(state.markers);
}

function applyEvents(rows, width) {
  for (const r of rows) events.set(r.id, { ts: Date.parse(r.ts), type: r.type, data: r.data });
  if (rows.length) drawMarkers(width);
}

/** The instrument's events before the live bucket, over the history's range. */
async function loadEvents(inst, interval, to) {
  const width = INTERVALS[interval];
  const params = new URLSearchParams({ exchange: inst.exchange, symbol: inst.symbol, from: iso(to - HISTORY_BARS * width), to: iso(to) });
  const rows = [];
  for (let cursor = null; ; ) {
    if (cursor) params.set('cursor', cursor);
    const page = await fetchJson(`/v1/events?${params}`);
    rows.push(...page.data);
    if (!page.next) return rows;
    cursor = page.next;
  }
}

function applyTrades(rows, width) {
  const touched = new Set();
  for (const r of rows) {
    const ts = Date.parse(r.ts);
    if (ts < liveFrom) continue;
    const time = floorMs(ts, width) / 1000;
    let b = bars.get(time);
    if (!b) {
      b = formingBase(time, ts) ?? { time, open: r.price, high: r.price, low: r.price, close: r.price, volume: 0, firstTs: ts, lastTs: ts, src: 'trades' };
      bars.set(time, b);
    }
    if (ts < b.firstTs) {
      b.open = r.price;
      b.firstTs = ts;
    }
    if (ts >= b.lastTs) {
      b.close = r.price;
      b.lastTs = ts;
    }
    b.high = Math.max(b.high, r.price);
    b.low = Math.min(b.low, r.price);
    b.volume += r.amount;
    touched.add(time);
    state.trades++;
  }
  if (touched.size) draw(touched);
}

/**
 * The bucket still forming when the page loaded, where the trades don't reach back to its start
 * (a fresh start, 1h): the exchange's 1m candles before the minute of its first trade open it, the
 * trades go on from there — the same rule as the history, per minute. Undefined when there are
 * none (the trades then are the whole bucket).
 */
function formingBase(time, firstTradeTs) {
  if (!forming || forming.time !== time) return undefined;
  const cut = floorMs(firstTradeTs, 60e3);
  const before = forming.minutes.filter((m) => Date.parse(m.bucket) < cut && m.open !== null);
  if (!before.length) return undefined;
  const b = { time, open: before[0].open, high: -Infinity, low: Infinity, close: before[before.length - 1].close, volume: 0, firstTs: -Infinity, lastTs: -Infinity, src: 'trades' };
  for (const m of before) {
    b.high = Math.max(b.high, m.high);
    b.low = Math.min(b.low, m.low);
    b.volume += m.volume;
  }
  return b;
}

async function fetchJson(url) {
  const res = await fetch(url);
  const body = await res.json();
  if (!res.ok) throw new Error(body.message || `${res.status} ${res.statusText}`);
  return body;
}

async function fetchCandles(params) {
  const rows = [];
  for (let cursor = null; ; ) {
    if (cursor) params.set('cursor', cursor);
    const page = await fetchJson(`/v1/ohlcv?${params}`);
    rows.push(...page.data);
    if (!page.next) return rows;
    cursor = page.next;
  }
}

/** The closed buckets before `to`: bucket start (s) -> bar, from the trades and the exchange's candles. */
async function loadHistory(inst, interval, to) {
  const width = INTERVALS[interval];
  const query = (source) => new URLSearchParams({ exchange: inst.exchange, symbol: inst.symbol, interval, from: iso(to - HISTORY_BARS * width), to: iso(to), source });
  const [fromTrades, fromExchange] = await Promise.all([
    fetchCandles(query('trades')),
    // An exchange without candles of its own (or none at a usable timeframe) has trades only.
    fetchCandles(query('exchange')).catch(() => []),
  ]);
  const out = new Map();
  const put = (r, src) => {
    if (r.open === null || r.close === null) return;
    const time = Date.parse(r.bucket) / 1000;
    const had = out.get(time);
    if (had && had.volume > r.volume) return; // the candle that saw more of the bucket
    out.set(time, { time, open: r.open, high: r.high, low: r.low, close: r.close, volume: r.volume, firstTs: -Infinity, lastTs: Infinity, src });
  };
  for (const r of fromExchange) put(r, 'exchange');
  for (const r of fromTrades) put(r, 'trades');
  return out;
}

function subscribe(inst, interval, my, attempt = 0) {
  const width = INTERVALS[interval];
  let fitted = attempt > 0;
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/stream`);
  socket = ws;
  ws.onopen = () => {
    // Bars from liveFrom on are rebuilt from the replayed and live trades.
    for (const t of [...bars.keys()]) if (t * 1000 >= liveFrom) bars.delete(t);
    redrawAll();
    ws.send(JSON.stringify({ op: 'subscribe', channels: ['trades', 'events'], instruments: [inst], since: iso(liveFrom) }));
    setStatus('replaying…');
  };
  ws.onmessage = (ev) => {
    if (my !== gen) return;
    const msg = JSON.parse(ev.data);
    if (msg.type === 'data' && msg.channel === 'trades') applyTrades(msg.data, width);
    else if (msg.type === 'data' && msg.channel === 'events') applyEvents(msg.data, width);
    else if (msg.type === 'live') {
      attempt = 0;
      if (!fitted) {
        // The replayed trades are drawn: fit once more with the forming bar in.
        fitted = true;
        fit();
      }
      if (!bars.size) message(NO_CANDLES);
      setStatus('live');
    } else if (msg.type === 'error') {
      state.error = msg.message;
      setStatus(`stream error: ${msg.message}`);
    }
  };
  ws.onclose = () => {
    if (my !== gen) return;
    setStatus('reconnecting…');
    // Complete bars stay; the newest one is rebuilt on resubscribe.
    if (rendered) liveFrom = Math.max(liveFrom, rendered * 1000);
    window.setTimeout(() => my === gen && subscribe(inst, interval, my, attempt + 1), Math.min(10_000, 500 * 2 ** attempt));
  };
}

async function show(inst, interval) {
  const my = ++gen;
  if (socket) socket.close();
  socket = null;
  state.instrument = inst;
  state.interval = interval;
  state.trades = 0;
  state.updates = 0;
  state.error = null;
  bars = new Map();
  events = new Map();
  drawMarkers(INTERVALS[interval]);
  rendered = 0;
  userMoved = false;
  redrawAll();
  setStatus('loading…');
  message('');
  const width = INTERVALS[interval];
  liveFrom = floorMs(Date.now(), width);
  forming = null;
  try {
    const minutes = new URLSearchParams({ exchange: inst.exchange, symbol: inst.symbol, interval: '1m', from: iso(liveFrom), source: 'exchange' });
    const [history, formingMinutes, pastEvents] = await Promise.all([
      loadHistory(inst, interval, liveFrom),
      width > 60e3 ? fetchCandles(minutes).catch(() => []) : [],
      // Markers are an extra: a chart without them beats no chart.
      loadEvents(inst, interval, liveFrom).catch(() => []),
    ]);
    if (my !== gen) return;
    forming = { time: liveFrom / 1000, minutes: formingMinutes };
    bars = history;
    redrawAll();
    applyEvents(pastEvents, width);
    fit();
    if (!bars.size) message(NO_CANDLES);
    subscribe(inst, interval, my);
  } catch (e) {
    state.error = String(e.message || e);
    setStatus(`error: ${state.error}`);
  }
}

async function main() {
  const params = new URLSearchParams(location.search);
  const select = $('instrument');
  const intervalSelect = $('interval');
  if (INTERVALS[params.get('interval')]) intervalSelect.value = params.get('interval');
  let list = [];
  try {
    list = (await fetchJson('/v1/instruments?active=true')).data;
  } catch (e) {
    setStatus(`error: ${e.message}`);
    return;
  }
  if (!list.length) {
    message('no instruments yet: start the gateways (tickflow start)');
    setStatus('idle');
    return;
  }
  for (const i of list) {
    const o = document.createElement('option');
    o.value = JSON.stringify({ exchange: i.exchange, symbol: i.symbol });
    o.textContent = `${i.exchange} ${i.symbol}`;
    select.appendChild(o);
  }
  const wanted = list.find((i) => i.exchange === params.get('exchange') && i.symbol === params.get('symbol'));
  if (wanted) select.value = JSON.stringify({ exchange: wanted.exchange, symbol: wanted.symbol });
  const go = () => show(JSON.parse(select.value), intervalSelect.value);
  select.onchange = go;
  intervalSelect.onchange = go;
  go();
}

main();
