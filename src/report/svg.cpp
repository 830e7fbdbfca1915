#include "longattn/report/svg.hpp"

#include <fmt/format.h>

namespace longattn {

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += ch;
    }
  }
  return out;
}

Svg::Svg(double width, double height, double display_width, double display_height)
    : width_(width),
      height_(height),
      display_width_(display_width > 0 ? display_width : width),
      display_height_(display_height > 0 ? display_height : height) {}

Svg& Svg::rect(double x, double y, double w, double h, std::string_view fill, std::string_view attrs) {
  body_ += fmt::format(R"(<rect x="{:g}" y="{:g}" width="{:g}" height="{:g}" fill="{}"{}{}/>)", x, y, w,
                       h, xml_escape(fill), attrs.empty() ? "" : " ", attrs);
  body_ += '\n';
  return *this;
}

Svg& Svg::line(double x1, double y1, double x2, double y2, std::string_view stroke, double width) {
  body_ += fmt::format(R"(<line x1="{:g}" y1="{:g}" x2="{:g}" y2="{:g}" stroke="{}" stroke-width="{:g}"/>)",
                       x1, y1, x2, y2, xml_escape(stroke), width);
  body_ += '\n';
  return *this;
}

Svg& Svg::text(double x, double y, std::string_view content, std::string_view attrs) {
  body_ += fmt::format(R"(<text x="{:g}" y="{:g}"{}{}>{}</text>)", x, y, attrs.empty() ? "" : " ",
                       attrs, xml_escape(content));
  body_ += '\n';
  return *this;
}

Svg& Svg::title(std::string_view content) {
  body_ += fmt::format("<title>{}</title>\n", xml_escape(content));
  return *this;
}

Svg& Svg::raw(std::string_view element) {
  body_ += element;
  body_ += '\n';
  return *this;
}

std::string Svg::str() const {
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:g}\" height=\"{:g}\" viewBox=\"0 0 {:g} {:g}\">\n"
      "{}</svg>\n",
      display_width_, display_height_, width_, height_, body_);
}

}  // namespace longattn
