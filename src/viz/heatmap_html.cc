#include "viz/heatmap_html.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "viz/heatmap_svg.h"

namespace salience::viz {
namespace {

// Weights to 4 decimals keep the page small; the tooltip shows 4.
nlohmann::json Rounded(const std::vector<float>& map) {
  nlohmann::json out = nlohmann::json::array();
  for (float value : map) out.push_back(std::round(value * 1e4) / 1e4);
  return out;
}

constexpr const char* kStyle = R"CSS(
body{font-family:system-ui,sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:18px;margin:0 0 8px}
#controls{display:flex;gap:16px;align-items:center;margin:8px 0}
#tokens{margin:8px 0;line-height:2}
.token{padding:2px 5px;margin:2px;border:1px solid #bbb;border-radius:4px;cursor:pointer;font-family:monospace}
.token.selected{background:#ffd54f;border-color:#e0a800}
#main{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
#grid{display:grid;gap:8px}
.thumb{cursor:pointer;text-align:center;font-size:11px}
.thumb canvas{display:block;border:1px solid #ddd;image-rendering:pixelated}
.thumb.active canvas{border-color:#e0a800}
#zoom text{font-family:monospace;font-size:11px}
#zoom .hl{stroke:#ff3d00;stroke-width:2;fill:none}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;padding:3px 6px;border-radius:3px;font-size:12px;display:none}
#top{font-family:monospace;font-size:12px;white-space:pre}
#scale{font-size:11px}
)CSS";

constexpr const char* kScript = R"JS(
const D = JSON.parse(document.getElementById('data').textContent);
const n = D.tokens.length;
const VIRIDIS = [[68,1,84],[71,44,122],[59,81,139],[44,113,142],[33,144,141],[39,173,129],[92,200,99],[170,220,50],[253,231,37]];
function color(w){let t=Math.sqrt(Math.max(0,Math.min(1,w)))*8;const i=Math.min(7,Math.floor(t)),f=t-i;
  const c=VIRIDIS[i].map((a,k)=>Math.round(a+(VIRIDIS[i+1][k]-a)*f));return `rgb(${c[0]},${c[1]},${c[2]})`;}
const layerSel=document.getElementById('layer-select'), headSel=document.getElementById('head-select');
let selected=-1;
function mapOf(l,h){ if(l==='rollout') return D.rollout;
  const li=D.layers.indexOf(+l); if(h==='mean'){const m=new Array(n*n).fill(0);
    for(let hi=0;hi<D.heads.length;hi++){const a=D.maps[li*D.heads.length+hi];for(let e=0;e<n*n;e++)m[e]+=a[e]/D.heads.length;}return m;}
  return D.maps[li*D.heads.length+D.heads.indexOf(+h)]; }
function thumb(title,map,onclick,active){const div=document.createElement('div');div.className='thumb'+(active?' active':'');
  const cv=document.createElement('canvas');const s=Math.max(2,Math.floor(64/n));cv.width=cv.height=n*s;
  const g=cv.getContext('2d');for(let i=0;i<n;i++)for(let j=0;j<n;j++){g.fillStyle=color(map[i*n+j]);g.fillRect(j*s,i*s,s,s);}
  if(selected>=0){g.strokeStyle='#ff3d00';g.lineWidth=1;g.strokeRect(0,selected*s,n*s,s);g.strokeRect(selected*s,0,s,n*s);}
  div.appendChild(cv);div.appendChild(document.createTextNode(title));div.onclick=onclick;return div;}
function drawGrid(){const grid=document.getElementById('grid');grid.innerHTML='';
  const ls=layerSel.value==='all'?D.layers.map(String):(layerSel.value==='rollout'?[]:[layerSel.value]);
  const hs=headSel.value==='all'?D.heads.map(String):[headSel.value];
  grid.style.gridTemplateColumns=`repeat(${hs.length},auto)`;
  for(const l of ls)for(const h of hs)grid.appendChild(thumb(`L${l} H${h}`,mapOf(l,h),()=>{layerSel.value=l;headSel.value=h;render();},false));
  if(D.rollout.length&&(layerSel.value==='all'||layerSel.value==='rollout')){const r=thumb('rollout',D.rollout,()=>{layerSel.value='rollout';render();},layerSel.value==='rollout');grid.appendChild(r);} }
function zoomMap(){ if(layerSel.value==='rollout') return [D.rollout,'rollout (all layers)'];
  const l=layerSel.value==='all'?String(D.layers[0]):layerSel.value; const h=headSel.value==='all'?'mean':headSel.value;
  return [mapOf(l,h), `layer ${l}, head ${h}`]; }
function drawZoom(){const [map,title]=zoomMap();const cell=Math.max(8,Math.min(28,Math.floor(420/n)));
  const lw=8*Math.max(...D.tokens.map(t=>t.length))+8, size=n*cell;
  const ns='http://www.w3.org/2000/svg';const svg=document.getElementById('zoom');svg.innerHTML='';
  svg.setAttribute('width',lw+size+10);svg.setAttribute('height',lw+size+30);
  const mk=(tag,attrs,text)=>{const e=document.createElementNS(ns,tag);for(const k in attrs)e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;svg.appendChild(e);return e;};
  mk('text',{x:lw,y:14,'font-weight':'bold'},title);
  const y0=24,tip=document.getElementById('tip');
  for(let i=0;i<n;i++)for(let j=0;j<n;j++){const r=mk('rect',{x:lw+j*cell,y:y0+i*cell,width:cell,height:cell,fill:color(map[i*n+j]),class:'cell'});
    r.onmousemove=ev=>{tip.style.display='block';tip.style.left=(ev.clientX+12)+'px';tip.style.top=(ev.clientY+12)+'px';tip.textContent=`${D.tokens[i]} \u2192 ${D.tokens[j]}: ${map[i*n+j].toFixed(4)}`;};
    r.onmouseleave=()=>{tip.style.display='none';};}
  for(let i=0;i<n;i++){const t=mk('text',{x:lw-4,y:y0+i*cell+cell/2,'text-anchor':'end','dominant-baseline':'middle',class:'ylabel'},D.tokens[i]);t.style.cursor='pointer';t.onclick=()=>select(i);
    const x=lw+i*cell+cell/2,y=y0+size+4;const u=mk('text',{transform:`translate(${x},${y}) rotate(90)`,'dominant-baseline':'middle',class:'xlabel'},D.tokens[i]);u.style.cursor='pointer';u.onclick=()=>select(i);}
  if(selected>=0){mk('rect',{x:lw,y:y0+selected*cell,width:size,height:cell,class:'hl'});mk('rect',{x:lw+selected*cell,y:y0,width:cell,height:size,class:'hl'});}
  const top=document.getElementById('top');
  if(selected<0){top.textContent='Choose a token to see what it attends to and what attends to it.';return;}
  const row=[...Array(n).keys()].map(j=>[map[selected*n+j],D.tokens[j]]).sort((a,b)=>b[0]-a[0]).slice(0,6);
  const col=[...Array(n).keys()].map(i=>[map[i*n+selected],D.tokens[i]]).sort((a,b)=>b[0]-a[0]).slice(0,6);
  top.textContent=`"${D.tokens[selected]}" attends to:\n`+row.map(([w,t])=>`  ${w.toFixed(3)}  ${t}`).join('\n')+`\n\nattended to by:\n`+col.map(([w,t])=>`  ${w.toFixed(3)}  ${t}`).join('\n');}
function select(i){selected=(selected===i)?-1:i;document.querySelectorAll('.token').forEach((e,k)=>e.classList.toggle('selected',k===selected));render();}
function render(){drawGrid();drawZoom();}
document.querySelectorAll('.token').forEach((e,k)=>e.onclick=()=>select(k));
layerSel.onchange=render;headSel.onchange=render;
// A link can open a view: #layer=0&head=4&token=2.
const want=new URLSearchParams(location.hash.slice(1));
if(want.has('layer'))layerSel.value=want.get('layer');
if(want.has('head'))headSel.value=want.get('head');
if(want.has('token')&&+want.get('token')<n)select(+want.get('token'));else render();
)JS";

}  // namespace

std::string RenderHtml(const AttentionReport& report) {
  nlohmann::json data;
  data["text"] = report.text;
  data["tokens"] = report.tokens;
  data["layers"] = report.layers;
  data["heads"] = report.heads;
  data["maps"] = nlohmann::json::array();
  for (const auto& map : report.maps) data["maps"].push_back(Rounded(map));
  data["rollout"] = Rounded(report.rollout);
  std::string json =
      data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // "</script>" inside the data must not end the element.
  for (std::size_t at = json.find("</"); at != std::string::npos;
       at = json.find("</", at + 2))
    json.replace(at, 2, "<\\/");

  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta "
      "charset=\"utf-8\">\n<title>";
  html += XmlEscape("salience explain: " + report.text);
  html += "</title>\n<style>";
  html += kStyle;
  html += "</style></head><body>\n<h1>";
  html += XmlEscape(report.text);
  html +=
      "</h1>\n<div id=\"controls\"><label>Layer <select id=\"layer-select\">"
      "<option value=\"all\">all</option>";
  for (int layer : report.layers)
    html += "<option value=\"" + std::to_string(layer) + "\">" +
            std::to_string(layer) + "</option>";
  if (!report.rollout.empty())
    html += "<option value=\"rollout\">rollout</option>";
  html +=
      "</select></label><label>Head <select id=\"head-select\"><option "
      "value=\"all\">all</option>";
  for (int head : report.heads)
    html += "<option value=\"" + std::to_string(head) + "\">" +
            std::to_string(head) + "</option>";
  html +=
      "<option value=\"mean\">mean</option></select></label>"
      "<span id=\"scale\">colour: sqrt(weight), 0 = dark purple, 1 = "
      "yellow</span></div>\n"
      "<div id=\"tokens\">";
  for (std::size_t i = 0; i < report.tokens.size(); ++i)
    html += "<span class=\"token\" data-index=\"" + std::to_string(i) + "\">" +
            XmlEscape(report.tokens[i]) + "</span>";
  html +=
      "</div>\n<div id=\"main\"><div id=\"grid\"></div><div><svg id=\"zoom\" "
      "xmlns=\"http://www.w3.org/2000/svg\"></svg><div "
      "id=\"top\"></div></div></div>\n"
      "<div id=\"tip\"></div>\n<script id=\"data\" type=\"application/json\">";
  html += json;
  html += "</script>\n<script>";
  html += kScript;
  html += "</script>\n</body></html>\n";
  return html;
}

}  // namespace salience::viz
