#include <metal_stdlib>
using namespace metal;

// OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, one thread per element.
kernel void add_sub(const device float* a [[buffer(0)]],
                    const device float* b [[buffer(1)]],
                    device float* sum [[buffer(2)]],
                    device float* diff [[buffer(3)]],
                    uint i [[thread_position_in_grid]]) {
    sum[i] = a[i] + b[i];
    diff[i] = a[i] - b[i];
}
