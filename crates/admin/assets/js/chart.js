// A thin wrapper over the vendored uPlot (window.uPlot, loaded by index.html): time-series
// lines in the page's colours, resized with its box.

import { h, clear, fmtRate, fmtInt } from './ui.js';

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/**
 * el: container. series: [{label, color: '--c1'}]. unit: shown on the y axis and in the legend.
 * window: if set, the x axis always spans the last `window` seconds up to now.
 * Returns {set(data), destroy()} where data = [xs (unix seconds), ...ys].
 */
export function lineChart(el, { series, unit, decimals = 0, height = 220, window: win = 0, legend = true }) {
  let span = win;
  const U = window.uPlot;
  const box = h('div.chart');
  clear(el, box);
  if (!U) {
    clear(box, h('div.chart-empty', 'The chart library did not load (assets/vendor/uplot).'));
    return { set() {}, destroy() {} };
  }
  const fmt = decimals ? fmtRate : fmtInt;
  const axis = { stroke: css('--muted'), grid: { stroke: css('--line'), width: 1 }, ticks: { stroke: css('--line'), width: 1 }, font: '11px system-ui, sans-serif' };
  const opts = {
    width: Math.max(300, el.clientWidth || 600),
    height,
    cursor: { drag: { x: false, y: false } },
    legend: { show: legend, live: true },
    scales: { x: { time: true, range: (u, min, max) => (span ? [Date.now() / 1000 - span, Date.now() / 1000] : [min, max]) }, y: { range: (u, min, max) => [0, Math.max(decimals ? 1 : 5, max * 1.1)] } },
    axes: [
      { ...axis },
      { ...axis, size: 56, label: unit, labelSize: 16, labelFont: '11px system-ui, sans-serif', values: (u, vals) => vals.map((v) => fmt(v)) },
    ],
    series: [
      { label: 'time', value: (u, v) => (v == null ? '–' : new Date(v * 1000).toLocaleTimeString()) },
      ...series.map((s) => ({
        label: s.label,
        stroke: css(s.color),
        width: 1.6,
        value: (u, v) => (v == null ? '–' : fmt(v) + (unit ? ' ' + unit : '')),
      })),
    ],
  };
  const empty = [[], ...series.map(() => [])];
  const plot = new U(opts, empty, box);
  const ro = new ResizeObserver(() => {
    const w = el.clientWidth;
    if (w > 0 && Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height });
  });
  ro.observe(el);
  return {
    set(data) { plot.setData(data); },
    /** Show the last `s` seconds up to now, however few points there are. */
    setWindow(s) { span = s; },
    destroy() { ro.disconnect(); plot.destroy(); },
  };
}
