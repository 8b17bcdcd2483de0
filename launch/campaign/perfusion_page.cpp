// The perfusion study page: perfusion.png (CBF with core and hypoperfused tissue), perfusion_maps.png
// (CBF, CBV, MTT, Tmax with colour bars) and perfusion.html, which shows them beside the volumes,
// mismatch and DEFUSE-3 verdict, the legends with units, and the arterial and venous curves.
#include <fmt/format.h>

#include <sstream>

#include "core/atomic_file.h"
#include "data/perfusion/perfusion_pictures.h"
#include "launch/campaign/html_text.h"
#include "launch/campaign/perfusion_summary.h"
#include "launch/campaign/sink.h"

namespace vitruvian::campaign {

namespace {

using json = nlohmann::json;

std::string hex(const std::array<std::uint8_t, 3>& c) { return fmt::format("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]); }

std::string criterion_row(const std::string& name, const json& c, const char* unit) {
  const std::string value =
      c.at("value").is_null() ? "no core" : fmt::format("{:.1f}{}", c.at("value").get<double>(), unit);
  const bool met = c.at("met").get<bool>();
  return fmt::format("<tr><td>{}</td><td>{}</td><td>{}{}</td><td class=\"{}\">{}</td></tr>", name, value,
                     html_escape(c.at("limit").get<std::string>()), unit, met ? "met" : "unmet",
                     met ? "met" : "not met");
}

/// The deconvolution as the page names it.
std::string deconvolution_name(const std::string& key) {
  if (key == "osvd") return "block-circulant SVD (oSVD)";
  if (key == "model") return "model-based (Erlang residues, likelihood-weighted)";
  return "plain SVD";
}

/// Where the deconvolution ran, from the report's `device` ("cpu", "cuda:0", ...).
std::string device_name(const std::string& device) {
  return device == "cpu" ? "on the CPU" : fmt::format("on the GPU ({})", device);
}

std::string summary_table(const json& p) {
  const json& v = p.at("volumes_ml");
  const json& d = p.at("defuse3");
  std::ostringstream s;
  s << "<table class=\"triage\">";
  s << fmt::format(
      "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>Ischaemic core (rCBF &lt; {:g} %)</td><td>{:.1f} "
      "mL</td></tr>",
      hex(data::kCoreColour), 100 * p.at("thresholds").at("rcbf").get<double>(), v.at("core").get<double>());
  if (const double below = v.value("core_below_cbv_min", 0.0); below > 0) {
    s << fmt::format(
        "<tr><td class=\"part\">of it, under the CSF floor (CBV &lt; {:g} mL/100 g) with Tmax &gt; {:g} s</td>"
        "<td>{:.1f} mL</td></tr>",
        p.at("thresholds").at("cbv_min").get<double>(), p.at("thresholds").at("tmax_s").get<double>(), below);
  }
  s << fmt::format(
      "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>Hypoperfused (Tmax &gt; {:g} s)</td><td>{:.1f} "
      "mL</td></tr>",
      hex(data::kHypoperfusedColour), p.at("thresholds").at("tmax_s").get<double>(),
      v.at("hypoperfused").get<double>());
  s << fmt::format("<tr><td>Penumbra (hypoperfused, not core)</td><td>{:.1f} mL</td></tr>",
                   v.at("penumbra").get<double>());
  s << fmt::format("<tr><td>Mismatch volume</td><td>{:.1f} mL</td></tr>", v.at("mismatch").get<double>());
  s << fmt::format(
      "<tr><td>Mismatch ratio</td><td>{}</td></tr>",
      p.at("mismatch_ratio").is_null() ? "no core" : fmt::format("{:.1f}", p.at("mismatch_ratio").get<double>()));
  s << fmt::format("<tr><td>Lesion side (patient)</td><td>{}</td></tr>",
                   p.at("side").is_null() ? "none" : p.at("side").get<std::string>());
  s << "</table>";
  const bool eligible = d.at("eligible").get<bool>();
  s << fmt::format("<p class=\"verdict {}\">DEFUSE-3: {}</p>", eligible ? "met" : "unmet",
                   eligible ? "eligible (every criterion met)" : "not eligible");
  s << "<table><tr><th>criterion</th><th>value</th><th>limit</th><th></th></tr>";
  s << criterion_row("core volume", d.at("core_ml"), " mL")
    << criterion_row("mismatch ratio", d.at("mismatch_ratio"), "")
    << criterion_row("mismatch volume", d.at("mismatch_ml"), " mL");
  s << "</table>";
  return s.str();
}

std::string maps_legend() {
  std::ostringstream s;
  s << "<table><tr><th>row</th><th>map</th><th>colour bar bottom … top</th></tr>";
  int row = 1;
  for (const auto& m : data::perfusion_map_styles()) {
    s << fmt::format("<tr><td>{}</td><td>{}</td><td>{:g} … {:g} {} (black: outside the brain)</td></tr>", row++,
                     m.title, m.low, m.high, html_escape(m.unit));
  }
  s << "</table>";
  return s.str();
}

std::string page(const std::string& study, const json& p) {
  const json& aif = p.at("arterial_input");
  std::ostringstream s;
  s << "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Perfusion " << html_escape(study)
    << "</title><style>"
       "body{font-family:sans-serif;margin:2em;background:#fafafa}table{border-collapse:collapse;margin:0.5em 0}"
       "td,th{border:1px solid #ccc;padding:4px "
       "8px;font-size:13px}th{background:#eee}.met{color:#070}.unmet{color:#b00}"
       ".verdict{font-size:18px;font-weight:bold}.swatch{display:inline-block;width:12px;height:12px;margin-right:6px}"
       ".part{padding-left:26px;color:#555}"
       ".row{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}img{max-width:100%}</style></head><body>\n";
  const std::string deconvolution = p.value("deconvolution", "osvd"),
                    tmax_from = p.value("tmax_deconvolution", deconvolution);
  s << fmt::format(
      "<h1>CT perfusion: {}</h1><p>Series {}, {} frames every {:.2f} s; {} deconvolution{} {}. "
      "<a href=\"report.json\">report.json</a></p>\n",
      html_escape(study), html_escape(p.value("series", "")), p.at("frames").get<int>(),
      p.at("interval_s").get<double>(), deconvolution_name(deconvolution),
      tmax_from == deconvolution ? "" : fmt::format(", Tmax by {} deconvolution", deconvolution_name(tmax_from)),
      html_escape(device_name(p.value("device", "cpu"))));
  const json filter = p.value("filter", json::object());
  if (filter.contains("contrast_to_noise") && filter.at("contrast_to_noise").is_number()) {
    // How far the bolus stands above the noise: where it is low, the core is under-called
    // (docs/PERFUSION.md, "Limits").
    const auto slab = filter.value("slab_slices", std::int64_t{1});
    const std::string through =
        slab > 1 ? fmt::format("the mean of {} slices ({:g} mm slab) and ", slab, filter.value("slab_mm", 0.0)) : "";
    s << fmt::format(
        "<p>Noise: σ {:.1f} HU a frame per voxel, {:.1f} HU after {}smoothing; the brain's mean bolus peaks at "
        "{:.1f} HU: contrast-to-noise {:.1f}.</p>\n",
        filter.value("frame_noise_hu", 0.0), filter.value("smoothed_noise_hu", 0.0), through,
        filter.value("brain_peak_hu", 0.0), filter.at("contrast_to_noise").get<double>());
  }
  s << "<div class=\"row\"><div><img src=\"perfusion.png\" alt=\"CBF with core and hypoperfused tissue\"></div><div>"
    << summary_table(p) << "</div></div>\n";
  s << "<h2>Maps</h2><div class=\"row\"><div><img src=\"perfusion_maps.png\" alt=\"CBF, CBV, MTT and Tmax "
       "maps\"></div><div>"
    << maps_legend() << "</div></div>\n";
  s << "<h2>Arterial input and venous output</h2><div class=\"row\"><div>" << perfusion_curves_svg(p, 520, 260)
    << "</div><div>";
  s << fmt::format(
      "<p>Arterial input: {} {} voxel(s) centred at ({:.1f}, {:.1f}, {:.1f}) mm LPS, peak {:.0f} HU at {:.1f} s, "
      "scaled ×{:.2f} by the venous output.</p>",
      aif.value("manual", false) ? "placed," : "found,", aif.value("voxels", 0),
      aif.at("centre_lps_mm")[0].get<double>(), aif.at("centre_lps_mm")[1].get<double>(),
      aif.at("centre_lps_mm")[2].get<double>(), aif.value("peak_hu", 0.0), aif.value("ttp_s", 0.0),
      aif.value("scale", 1.0));
  const json& vof = p.at("venous_output");
  s << (vof.value("found", false)
            ? fmt::format("<p>Venous output: {} voxel(s), peak {:.0f} HU at {:.1f} s.</p>", vof.value("voxels", 0),
                          vof.value("peak_hu", 0.0), vof.value("ttp_s", 0.0))
            : std::string("<p>No venous output found: the arterial input is not scaled.</p>"));
  s << "</div></div></body></html>\n";
  return s.str();
}

}  // namespace

void PerfusionPageSink::write(FinishedStudy& f, const std::filesystem::path& dir) const {
  for (const RouteResult& r : f.results) {
    if (!r.sections.contains("perfusion") || r.maps.size() < 4) continue;
    const data::Volume* cbf = &r.maps[0].volume;
    const auto slices = data::perfusion_slices(cbf->voxels, 6);
    write_png(dir / "perfusion.png", data::perfusion_summary_picture(*cbf, r.labels, slices));
    write_png(dir / "perfusion_maps.png",
              data::perfusion_maps_picture({cbf, &r.maps[1].volume, &r.maps[2].volume, &r.maps[3].volume}, slices));
    write_file_atomic(dir / "perfusion.html", page(f.study.id(), r.sections.at("perfusion")));
    return;  // one page per study: its first perfusion route
  }
}

}  // namespace vitruvian::campaign
