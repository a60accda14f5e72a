// Declarations shared by every compute shader of the Vulkan backend, included after `#version 450` and
// `#extension GL_GOOGLE_include_directive : require`.
//
// Specialization constants (ids mirrored in shaders/ops.h, kSpec*):
//   constant_id 0  WDTYPE  dtype of a weight binding (embed, matmul, norm_matmul, router_lut's router): 0 F32,
//                          1 F16, 2 BF16; default 0
//   constant_id 1  local size x: workgroup size, any power of two >= 32; default 256 (attention needs it >= hd)
//   constant_id 2  LDTYPE  dtype of the lookup-table rows (router_lut), same encoding as WDTYPE; default 0
//   constant_id 3  NDTYPE  dtype of a fused RMSNorm's weight (norm_matmul, router_lut), same encoding; default 0
//   constant_id 4  GELU    norm_matmul: 1 applies GELU to the product, 0 not; default 0
//   constant_id 5  STORE   attention: 1 stores the step's keys and values itself, 0 after attention_store; default 1
// Each is declared by the shaders that use it, so the others carry no unused constant.
//
// Weights and table rows are bound as `uint` arrays (no 16-bit storage needed, so any device runs them):
//   F32   element i is word i (the float's bits)
//   F16   two per word, element i in word i >> 1, low half first (unpackHalf2x16)
//   BF16  two per word, element i in word i >> 1, low half first, value = uintBitsToFloat(half << 16)
// The host pads such buffers to a whole number of words. Element indices are 32-bit: a bound weight has fewer
// than 2^32 elements (so do activation buffers).
//
// Every shader accumulates in float32, is correct for any local size above and any value of its dimensions
// (1 included), and strides over its workgroups, so the host may cap any dispatch at 65535 groups per dimension.

// Every storage buffer that a dispatch of a step writes is declared MOLE_DATA (weights, the table and the step's
// inputs, written before the step is submitted, are not).
#ifdef MOLE_CHAIN
// The _chain builds (a `// mole-chain` line in the shader; --tune chain=on): the shader waits in itself for the
// dispatches it depends on, instead of a pipeline barrier before it (shaders/chain.glsl). MOLE_DATA buffers are
// coherent there, so that what one dispatch writes, fenced by memoryBarrierBuffer() and counted by an atomic, the
// next reads from where all workgroups see it (as split-K attention's merge reads the partials). Each push block
// ends with MOLE_CHAIN_PUSH (ChainPush in ops.h, at offset 32); each main is MOLE_MAIN, which chain.glsl's main
// calls between the wait and the count. (Not the Vulkan memory model: under it, Mesa 22.3's lavapipe computed
// router_lut and attention wrong, nothing else in them changed.)
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference_uvec2 : require
#define MOLE_DATA coherent
#define MOLE_CHAIN_PUSH \
  layout(offset = 32) uvec2 chain_counters; \
  uint chain_wait;                          \
  uint chain_target;                        \
  uint chain_signal;
#define MOLE_MAIN mole_op_main
#else
#define MOLE_DATA
#define MOLE_CHAIN_PUSH
#define MOLE_MAIN main
#endif

layout(local_size_x = 256, local_size_x_id = 1) in;

#define BLOCK gl_WorkGroupSize.x
#define TID gl_LocalInvocationID.x

const uint DTYPE_F32 = 0u;
const uint DTYPE_F16 = 1u;
const uint DTYPE_BF16 = 2u;

// Defines `float FN(uint idx)` returning element idx (any index, odd ones included) of BUF, a uint array holding
// elements of dtype DT (a specialization constant, so the branches fold away when the pipeline is created).
// A macro because GLSL cannot pass a buffer to a function.
#define DEFINE_WEIGHT_LOADER(FN, BUF, DT)                              \
  float FN(uint idx) {                                                 \
    if (DT == DTYPE_F32) return uintBitsToFloat(BUF[idx]);             \
    uint word = BUF[idx >> 1];                                         \
    uint half_bits = (idx & 1u) != 0u ? word >> 16 : word & 0xFFFFu;   \
    if (DT == DTYPE_F16) return unpackHalf2x16(half_bits).x;           \
    return uintBitsToFloat(half_bits << 16);                           \
  }

#define NEG_INF uintBitsToFloat(0xFF800000u)  // -infinity (GLSL has no literal for it)

#if defined(MOLE_WORKGROUP_REDUCE) && defined(MOLE_SUBGROUP_REDUCE)
// Workgroup-wide reductions with subgroup arithmetic (the shader enables GL_KHR_shader_subgroup_arithmetic; the
// host runs such a variant only where the device has it): each subgroup reduces its values, one invocation of it
// writes the result to shared memory, and after one barrier every invocation adds (or takes the max of) the
// subgroups' results in subgroup order, so all get the same value; 2 barriers where the tree below takes 10 at a
// local size of 256. Same contract as the tree's. The sums come out in another order than the tree's, so their bits
// may differ from it in the last places.
shared float mole_reduce_scratch[gl_WorkGroupSize.x];  // one value per subgroup (at most one per invocation)

float workgroup_sum(float v) {
  const float s = subgroupAdd(v);
  if (subgroupElect()) mole_reduce_scratch[gl_SubgroupID] = s;
  barrier();
  float r = 0.0;
  for (uint i = 0u; i < gl_NumSubgroups; i++) r += mole_reduce_scratch[i];
  barrier();
  return r;
}

float workgroup_max(float v) {
  const float s = subgroupMax(v);
  if (subgroupElect()) mole_reduce_scratch[gl_SubgroupID] = s;
  barrier();
  float r = mole_reduce_scratch[0];
  for (uint i = 1u; i < gl_NumSubgroups; i++) r = max(r, mole_reduce_scratch[i]);
  barrier();
  return r;
}
#elif defined(MOLE_WORKGROUP_REDUCE)
// Workgroup-wide reductions through shared memory (with MOLE_SUBGROUP_REDUCE, above, subgroup arithmetic saves
// most of the barriers). Every invocation of the workgroup must call them, in uniform control flow; each returns the
// result to all invocations and leaves the scratch free for the next call. The tree needs a power-of-two local size.
shared float mole_reduce_scratch[gl_WorkGroupSize.x];

float workgroup_sum(float v) {
  mole_reduce_scratch[TID] = v;
  barrier();
  for (uint s = BLOCK / 2u; s > 0u; s >>= 1) {
    if (TID < s) mole_reduce_scratch[TID] += mole_reduce_scratch[TID + s];
    barrier();
  }
  float r = mole_reduce_scratch[0];
  barrier();
  return r;
}

float workgroup_max(float v) {
  mole_reduce_scratch[TID] = v;
  barrier();
  for (uint s = BLOCK / 2u; s > 0u; s >>= 1) {
    if (TID < s) mole_reduce_scratch[TID] = max(mole_reduce_scratch[TID], mole_reduce_scratch[TID + s]);
    barrier();
  }
  float r = mole_reduce_scratch[0];
  barrier();
  return r;
}
#endif

#ifdef MOLE_WORKGROUP_REDUCE_N
// Up to REDUCE_WIDTH sums reduced together, for a shader that needs several at once (router.glsl: a row's sum of
// squares and its logits): one tree walk and its barriers for all of them, where workgroup_sum() above walks once
// per sum. Each sum takes workgroup_sum()'s way (the tree, or with MOLE_SUBGROUP_REDUCE the subgroups), so each
// result has the bits a call of it would give. Every invocation calls it, in uniform control flow, with the same
// n <= REDUCE_WIDTH.
const uint REDUCE_WIDTH = 8u;
shared float mole_reduce_n_scratch[REDUCE_WIDTH * gl_WorkGroupSize.x];

#ifdef MOLE_SUBGROUP_REDUCE
// Subgroup arithmetic first (as workgroup_sum above): 2 barriers for all n sums.
void workgroup_sum_n(inout float v[REDUCE_WIDTH], uint n) {
  for (uint i = 0u; i < n; i++) {
    const float s = subgroupAdd(v[i]);
    if (subgroupElect()) mole_reduce_n_scratch[i * BLOCK + gl_SubgroupID] = s;
  }
  barrier();
  for (uint i = 0u; i < n; i++) {
    float r = 0.0;
    for (uint k = 0u; k < gl_NumSubgroups; k++) r += mole_reduce_n_scratch[i * BLOCK + k];
    v[i] = r;
  }
  barrier();
}
#else
void workgroup_sum_n(inout float v[REDUCE_WIDTH], uint n) {
  for (uint i = 0u; i < n; i++) mole_reduce_n_scratch[i * BLOCK + TID] = v[i];
  barrier();
  for (uint s = BLOCK / 2u; s > 0u; s >>= 1) {
    if (TID < s)
      for (uint i = 0u; i < n; i++)
        mole_reduce_n_scratch[i * BLOCK + TID] += mole_reduce_n_scratch[i * BLOCK + TID + s];
    barrier();
  }
  for (uint i = 0u; i < n; i++) v[i] = mole_reduce_n_scratch[i * BLOCK];
  barrier();
}
#endif
#endif
