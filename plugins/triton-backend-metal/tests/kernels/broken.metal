#include <metal_stdlib>
using namespace metal;

kernel void gap(const device float* x [[buffer(0)]],
                device float* y [[buffer(2)]],
                uint i [[thread_position_in_grid]]) {
    y[i] = x[i];
}

kernel void int_in(const device int* x [[buffer(0)]],
                   device float* y [[buffer(1)]],
                   uint i [[thread_position_in_grid]]) {
    y[i] = float(x[i]);
}

kernel void const_out(const device float* x [[buffer(0)]],
                      const device float* y [[buffer(1)]],
                      uint i [[thread_position_in_grid]]) {
}

kernel void no_attr(const device float* x [[buffer(0)]],
                    device float* y [[buffer(1)]],
                    uint i) {
}

kernel void one_buffer(device float* x [[buffer(0)]],
                       uint i [[thread_position_in_grid]]) {
}

kernel void vector_const(const device float* x [[buffer(0)]],
                         device float* y [[buffer(1)]],
                         constant float4& v [[buffer(2)]],
                         uint i [[thread_position_in_grid]]) {
}
