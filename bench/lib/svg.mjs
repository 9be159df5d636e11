// A bar chart of the summary as hand-written SVG (no dependencies): one panel per scenario and
// mode, one horizontal bar per server, each panel scaled to its own fastest server (scenarios
// differ by orders of magnitude), labelled with req/s and the ratio to the node baseline.
// Used by bench/run.mjs. Run with: node bench/run.mjs (not run on its own)

const PALETTE = ["#d9480f", "#f08c00", "#868e96", "#adb5bd", "#1c7ed6", "#0ca678", "#ae3ec9", "#37b24d", "#495057", "#e64980"];

const PANEL_WIDTH = 470;
const GAP = 24;
const COLUMNS = 2;
const NAME_WIDTH = 110;
const VALUE_WIDTH = 120;
const BAR_HEIGHT = 14;
const ROW_HEIGHT = 19;
const PANEL_TITLE = 24;

function escapeXml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]);
}

const int = (n) => Math.round(n).toLocaleString("en-US");

/**
 * rows: summarize()'s rows. servers: server names in a fixed order (colours follow it).
 * title: the chart's heading; subtitle: one line about the machine.
 */
export function barChartSvg(rows, { servers, title, subtitle }) {
  const panels = [];
  for (const row of rows) {
    const key = `${row.scenario} · ${row.mode}`;
    let panel = panels.find((p) => p.key === key);
    if (!panel) panels.push((panel = { key, rows: [] }));
    panel.rows.push(row);
  }
  const colour = (server) => PALETTE[Math.max(0, servers.indexOf(server)) % PALETTE.length];
  const panelHeight = (p) => PANEL_TITLE + p.rows.length * ROW_HEIGHT + 10;

  const parts = [];
  const top = 58;
  const columnY = Array(COLUMNS).fill(top);
  for (const panel of panels) {
    // Each panel goes to the shorter column, so the two columns stay level.
    const column = columnY.indexOf(Math.min(...columnY));
    const x = 12 + column * (PANEL_WIDTH + GAP);
    const y = columnY[column];
    columnY[column] += panelHeight(panel) + GAP / 2;
    const max = Math.max(...panel.rows.map((r) => (Number.isNaN(r.requestsPerSec) ? 0 : r.requestsPerSec)), 1);
    const barSpace = PANEL_WIDTH - NAME_WIDTH - VALUE_WIDTH;
    parts.push(`<g transform="translate(${x},${y})">`);
    parts.push(`<rect x="0" y="0" width="${PANEL_WIDTH}" height="${panelHeight(panel)}" fill="#f8f9fa" stroke="#dee2e6"/>`);
    parts.push(`<text x="8" y="16" class="panel">${escapeXml(panel.key)}</text>`);
    panel.rows.forEach((row, i) => {
      const rowY = PANEL_TITLE + i * ROW_HEIGHT;
      const width = Number.isNaN(row.requestsPerSec) ? 0 : Math.max(1, (row.requestsPerSec / max) * barSpace);
      const ratio = Number.isNaN(row.ratio) ? "" : ` (${row.ratio.toFixed(2)}x)`;
      const value = Number.isNaN(row.requestsPerSec) ? "n/a" : `${int(row.requestsPerSec)}${ratio}`;
      parts.push(`<text x="${NAME_WIDTH - 6}" y="${rowY + 11}" class="name">${escapeXml(row.server)}</text>`);
      parts.push(`<rect x="${NAME_WIDTH}" y="${rowY}" width="${width.toFixed(1)}" height="${BAR_HEIGHT}" fill="${colour(row.server)}">` +
        `<title>${escapeXml(`${row.server}: ${value} req/s, p99 ${Number.isNaN(row.p99Ms) ? "n/a" : row.p99Ms.toFixed(3)} ms`)}</title></rect>`);
      parts.push(`<text x="${(NAME_WIDTH + width + 4).toFixed(1)}" y="${rowY + 11}" class="value">${escapeXml(value)}</text>`);
    });
    parts.push("</g>");
  }
  const width = 12 + COLUMNS * PANEL_WIDTH + (COLUMNS - 1) * GAP + 12;
  const height = Math.max(...columnY) + 8;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    "<style>.title{font-size:16px;font-weight:bold}.sub{font-size:11px;fill:#495057}.panel{font-size:12px;font-weight:bold}" +
      ".name{font-size:11px;text-anchor:end}.value{font-size:10px;fill:#212529}</style>",
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="12" y="22" class="title">${escapeXml(title)}</text>`,
    `<text x="12" y="40" class="sub">${escapeXml(subtitle)}</text>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}
