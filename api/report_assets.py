"""The report page's stylesheet and scripts (api/report.py renders the page around them)."""

STYLE = """
:root { font-family: system-ui, sans-serif; color: #1d2433; background: #f6f7fb; }
body { max-width: 1100px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; word-break: break-all; }
.muted { color: #5f6b7a; font-size: .9rem; }
.status { display: inline-block; padding: .1rem .5rem; border-radius: .3rem; font-weight: 600;
  background: #e3e8f0; }
.status.COMPLETED { background: #d5f5e3; } .status.FAILED { background: #fadbd8; }
.bar { height: .6rem; background: #e3e8f0; border-radius: .3rem; overflow: hidden;
  margin: .5rem 0; }
.bar > div { height: 100%; background: #3867d6; transition: width .3s; }
.timeline { position: relative; height: 2.2rem; background: #e3e8f0; border-radius: .3rem;
  margin: 1rem 0 .3rem; }
.timeline .scene { position: absolute; top: 0; bottom: 0; border-left: 2px solid #8854d0; }
.timeline a { position: absolute; top: .35rem; width: .5rem; height: 1.5rem;
  margin-left: -.25rem; background: #3867d6; border-radius: .2rem; }
.timeline a.segment { margin-left: 0; border-radius: 0; background: #7f9cf5;
  border-right: 1px solid white; box-sizing: border-box; }
.chapters { position: relative; height: 1.6rem; margin-top: 1rem; }
.chapters div { position: absolute; top: 0; bottom: 0; overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis; font-size: .8rem; padding: .25rem .4rem; box-sizing: border-box;
  border-left: 2px solid #8854d0; background: #ece4f7; }
.speech { position: relative; height: 1rem; margin: .2rem 0; background: #f0f2f7;
  border-radius: .3rem; }
.speech span { position: absolute; top: 0; bottom: 0; min-width: 2px; background: #20bf6b; }
.transcript time { color: #5f6b7a; margin-right: .5rem; font-variant-numeric: tabular-nums; }
section { background: white; border-radius: .5rem; padding: 1rem 1.2rem; margin: 1rem 0;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }
.chips span { display: inline-block; background: #eef1f7; border-radius: 1rem;
  padding: .15rem .6rem; margin: .15rem; font-size: .9rem; }
.chips small { color: #5f6b7a; }
.frames { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr));
  gap: 1rem; }
.frame { background: white; border-radius: .5rem; overflow: hidden;
  box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.frame img { width: 100%; display: block; background: #ccd; }
#player { width: 100%; max-height: 60vh; background: black; border-radius: .5rem;
  margin: .5rem 0; position: sticky; top: 0; z-index: 1; }
[data-seek] { cursor: pointer; }
.frame .body { padding: .5rem .7rem; font-size: .9rem; }
.frame time { font-weight: 600; }
table { border-collapse: collapse; } td { padding: .1rem .8rem .1rem 0; }
.note { background: #fff4d6; border-radius: .3rem; padding: .3rem .6rem; }
#find input { width: 100%; padding: .5rem; font-size: 1rem; box-sizing: border-box;
  border: 1px solid #ccd3e0; border-radius: .3rem; }
#find-hits { margin: .5rem 0 0; padding-left: 1.2rem; font-size: .9rem; }
#find-hits a { font-weight: 600; margin-right: .4rem; }
.hit { outline: 3px solid #f7b731; } :target { outline: 3px solid #3867d6; }
"""

# Finds in the page itself (it is self-contained, and read with a share link, not an API
# key): every word must appear, "a phrase" as written, `or` between two words either, -word
# not. Enter jumps to the first match; each match links to its moment.
FIND = r"""
const query = document.getElementById("find-q"), list = document.getElementById("find-hits");
const items = [...document.querySelectorAll("[data-find]")]
  .map((el) => ({el, text: el.dataset.find.toLowerCase()}));
function terms(typed) {
  const all = [], not = []; let either = false;
  for (const m of typed.toLowerCase().matchAll(/(-?)(?:"([^"]*)"?|(\S+))/g)) {
    const word = (m[2] ?? m[3] ?? "").trim();
    if (!word) continue;
    if (!m[1] && word === "or") { either = all.length > 0; continue; }
    if (m[1]) not.push(word);
    else if (either) { all[all.length - 1].push(word); either = false; }
    else all.push([word]);
  }
  return [all, not];
}
function find() {
  const [all, not] = terms(query.value);
  for (const item of items) item.el.classList.remove("hit");
  list.replaceChildren();
  const hits = all.length ? items.filter((i) => all.every((g) => g.some((w) => i.text.includes(w)))
    && !not.some((w) => i.text.includes(w))) : [];
  for (const item of hits) {
    item.el.classList.add("hit");
    const entry = document.createElement("li"), link = document.createElement("a");
    link.href = item.el.dataset.go || "#" + item.el.id;
    link.dataset.seek = item.el.dataset.seek;
    link.textContent = item.el.dataset.at;
    entry.append(link, item.el.dataset.find.slice(0, 200));
    list.append(entry);
  }
  document.getElementById("find-count").textContent =
    !all.length ? "" : hits.length ? hits.length + " found" : "nothing found";
}
query.addEventListener("input", find);
document.getElementById("find").addEventListener("submit", (event) => {
  event.preventDefault();
  const first = list.querySelector("a");
  if (first) location.hash = first.getAttribute("href");
});
"""

# The player: anything with a data-seek time, clicked, plays the video from there.
PLAYER = r"""
const player = document.getElementById("player");
if (player) {
  player.addEventListener("error", () => player.remove());
  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-seek]");
    if (!target || !document.body.contains(player)) return;
    player.currentTime = Number(target.dataset.seek);
    player.play().catch(() => {});
    player.scrollIntoView({block: "nearest"});
  });
}
"""

LIVE = """
const source = new EventSource(%s);
source.addEventListener("progress", (message) => {
  const job = JSON.parse(message.data);
  document.getElementById("percent").textContent = job.percent_complete + "%%";
  document.getElementById("stage").textContent = job.stage.replace("_", " ");
  document.getElementById("bar").style.width = job.percent_complete + "%%";
});
for (const end of ["completed", "failed", "cancelled"]) {
  source.addEventListener(end, () => { source.close(); location.reload(); });
}
"""
