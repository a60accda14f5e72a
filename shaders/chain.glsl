// The dispatch chain (--tune chain=on; the _chain builds, see common.glsl), included last by each shader with a
// `// mole-chain` line: main() waits until the dispatches this one depends on have finished, runs the shader's own
// main (MOLE_MAIN), then counts this workgroup as finished. A step recorded this way has no pipeline barriers
// between its dispatches: the host (BarrierTracker in vk-runtime/op_record.h) numbers the step's groups of
// independent dispatches, which a barrier would separate, from 1; every workgroup of group g adds 1 to counter g when
// it is done, and a workgroup of group g + 1 starts once counter g has reached the number of workgroups in group g.
// Group g + 1 finished thus means group g, and so every earlier one, finished. The counters are zeroed at the step's
// start; counter 0 is the failure flag.
//
// Push (ChainPush in ops.h, offset 32): chain_counters, the counters' buffer device address (uvec2, low word first);
// chain_wait, the word of the counter to wait for; chain_target, the count to wait for (0: nothing to wait for, the
// step's first group); chain_signal, the word of this dispatch's group's counter. Counters are 256 bytes apart.
// The failure flag (word 0) holds the word of the first counter whose wait gave up: the host names that group.
//
// Memory, as split-K attention's merge (attention.comp): the buffers that dispatches write are coherent here
// (MOLE_DATA). Before the count every invocation fences its writes (memoryBarrierBuffer()) and the workgroup meets at
// a barrier, then invocation 0 counts with an atomic add; a waiting workgroup's invocation 0 reads the counter
// (volatile) until it is reached, the workgroup meets at a barrier, and every invocation fences before its reads.
//
// Forward progress: a workgroup spins while the workgroups it waits for run. Vulkan does not promise that those
// have started; GPUs start a queue's dispatches in order, so they have. So that a device that does not can never
// hang, a wait gives up after MOLE_CHAIN_SPINS rounds of reading the counter (each round one or two reads from L2,
// a few hundred ns: a second or more on a GPU, where a wait spans at most the two ops before it, milliseconds even
// at long contexts), sets counter 0 and goes on; every later wait sees it and goes on at once, and the host, seeing
// counter 0 set after the step, reports the step as failed (its results are void). Any wait that ends with its count
// not reached sets counter 0, however its loop ended.
#ifdef MOLE_CHAIN
layout(buffer_reference, std430, buffer_reference_align = 4) volatile coherent buffer MoleChainCounters { uint c[]; };

const uint MOLE_CHAIN_SPINS = 1u << 22;

void mole_chain_wait(MoleChainCounters ctr) {
  if (pc.chain_target == 0u) return;  // uniform: the step's first group
  if (gl_LocalInvocationIndex == 0u) {
    for (uint spins = 0u; spins < MOLE_CHAIN_SPINS; spins++)
      if (ctr.c[pc.chain_wait] >= pc.chain_target || ctr.c[0] != 0u) break;  // reached, or an earlier wait gave up
    // Not reached: given up (or the loop cut short: llvmpipe ends any loop after 65,535 rounds). The first to give
    // up says which counter it waited for (never word 0).
    if (ctr.c[pc.chain_wait] < pc.chain_target) atomicCompSwap(ctr.c[0], 0u, pc.chain_wait);
  }
  barrier();
  memoryBarrierBuffer();  // acquire: what the waited-for workgroups wrote before they counted
}

void mole_chain_signal(MoleChainCounters ctr) {
  memoryBarrierBuffer();  // release: this invocation's writes, before invocation 0 counts
  barrier();
  if (gl_LocalInvocationIndex == 0u) atomicAdd(ctr.c[pc.chain_signal], 1u);
}

void main() {
  MoleChainCounters ctr = MoleChainCounters(pc.chain_counters);
  mole_chain_wait(ctr);
  mole_op_main();
  mole_chain_signal(ctr);
}
#endif
