#include <metal_stdlib>
using namespace metal;

/* y = x * scale + bias for the first n elements; the grid may be larger than n. */
kernel void scale_bias(const device float* x [[buffer(0)]],
                       device float* y [[buffer(1)]],
                       constant float& scale [[buffer(2)]],
                       constant float& bias [[buffer(3)]],
                       constant uint& n [[buffer(4)]],
                       uint i [[thread_position_in_grid]]) {
    if (i < n) {
        y[i] = x[i] * scale + bias;
    }
}

// A second kernel in the same file: the config names the one it serves.
kernel void negate(const device float* x [[buffer(0)]],
                   device float* y [[buffer(1)]],
                   uint i [[thread_position_in_grid]]) {
    y[i] = -x[i];
}
