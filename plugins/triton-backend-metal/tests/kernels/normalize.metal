#include <metal_stdlib>
using namespace metal;

// Image normalization before a vision model: uint8 HWC pixels -> float
// (pixel / 255 - mean) / std, per channel (3 channels).
kernel void normalize_image(const device uchar* pixels [[buffer(0)]],
                            device float* out [[buffer(1)]],
                            constant float& mean [[buffer(2)]],
                            constant float& inv_std [[buffer(3)]],
                            uint i [[thread_position_in_grid]]) {
    out[i] = (float(pixels[i]) / 255.0f - mean) * inv_std;
}
