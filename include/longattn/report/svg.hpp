#pragma once
// A small SVG document builder: shapes in user units, attributes escaped. Shared by mask pictures
// and report charts.
#include <string>
#include <string_view>

namespace longattn {

std::string xml_escape(std::string_view text);

class Svg {
 public:
  // A document of width x height user units, displayed at display_width x display_height pixels
  // (0 = the same as the user units).
  Svg(double width, double height, double display_width = 0, double display_height = 0);

  // `attrs` is appended verbatim inside the element (e.g. R"(stroke="#000")"); callers build it
  // from constants or escape what they put in it.
  Svg& rect(double x, double y, double w, double h, std::string_view fill, std::string_view attrs = {});
  Svg& line(double x1, double y1, double x2, double y2, std::string_view stroke, double width = 1);
  Svg& text(double x, double y, std::string_view content, std::string_view attrs = {});
  Svg& title(std::string_view content);  // tooltip / accessible name of the picture
  Svg& raw(std::string_view element);    // an element written by the caller, verbatim

  std::string str() const;  // the complete document

 private:
  double width_, height_, display_width_, display_height_;
  std::string body_;
};

}  // namespace longattn
