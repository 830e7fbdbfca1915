#include "longattn/bench/runner.hpp"

#include <fmt/format.h>

#include <map>

#include "executor.hpp"
#include "longattn/bench/backend.hpp"
#include "longattn/error.hpp"
#include "longattn/importance.hpp"
#include "tensor_data.hpp"

namespace longattn::bench {
namespace {

std::string spec_key(const MaskSpec& s) {
  const MaskParams& p = s.params;
  std::string key = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", to_string(s.pattern),
                                s.seqlen, s.seed, p.window, p.global, p.prefix ? *p.prefix : -1,
                                p.block, p.sparse_block, p.min_block, p.average_block, p.keep,
                                p.sparse_causal, p.sparse_heads, to_string(p.selection));
  if (p.doc_lens)
    for (Index l : *p.doc_lens) key += fmt::format(",{}", l);
  if (p.histogram) {
    key += "|" + p.histogram->name;
    for (const HistogramBin& b : p.histogram->bins)
      key += fmt::format(",{}:{}:{}", b.lengths.begin, b.lengths.end, b.probability);
  }
  return key;
}

// Importance-selected block-sparse masks are scored from the case's inputs.
bool mask_needs_inputs(const MaskSpec& s) {
  return info(s.pattern).family == PatternFamily::dynamic &&
         s.params.selection == BlockSelection::importance;
}

std::string data_key_of(const Case& c) {
  return fmt::format("{}|{}:{}:{}|{}|{}", c.mask.seqlen, c.heads.heads_q, c.heads.heads_kv,
                     c.heads.head_dim, to_string(c.dtype), c.data_seed);
}

AttentionShape shape_of(const Case& c) {
  AttentionShape s;
  s.seqlen_q = s.seqlen_k = c.mask.seqlen;
  s.heads_q = c.heads.heads_q;
  s.heads_kv = c.heads.heads_kv;
  s.head_dim = c.heads.head_dim;
  return s;
}

// The inputs of one (shape, dtype, data seed), independent of the mask: reused across masks.
struct InputSet {
  HostTensors host;                     // fp32, rounded to the dtype
  std::vector<std::byte> q, k, v, d_o;  // packed in the dtype
};

// Everything of one (mask draw, inputs) that backends share: made once.
struct Instance {
  std::string key;
  AttentionShape shape;
  DType dtype;
  std::shared_ptr<const InputSet> data;
  std::unique_ptr<Checker> checker;
};

}  // namespace

struct Runner::State {
  RunOptions opt;
  std::shared_ptr<const Environment> env;
  std::map<std::string, std::unique_ptr<Backend>> backends;
  std::map<std::string, std::unique_ptr<Backend>> overrides;  // test doubles
  std::unique_ptr<Executor> host, gpu;
  std::string mask_key;
  std::unique_ptr<GeneratedMask> mask;
  std::unique_ptr<Instance> instance;
  std::map<std::string, std::shared_ptr<const InputSet>> input_sets;  // a few, see inputs()

  Backend& backend(const std::string& name) {
    if (auto it = overrides.find(name); it != overrides.end()) return *it->second;
    auto& b = backends[name];
    if (!b) b = make_backend(name);
    return *b;
  }
  Executor& executor(Device d) {
    if (d == Device::cpu) {
      if (!host) host = make_host_executor();
      return *host;
    }
    if (!gpu) gpu = make_gpu_executor();
    return *gpu;
  }
  // The case's mask; an importance-selected one from the same seeded inputs the kernels get.
  const GeneratedMask& generated(const Case& c) {
    const MaskSpec& spec = c.mask;
    const bool scored = mask_needs_inputs(spec);
    const std::string key = spec_key(spec) + (scored ? "|" + data_key_of(c) : "");
    if (!mask || key != mask_key) {
      instance.reset();  // holds a Checker over the old mask
      mask.reset();
      if (scored) {
        const InputSet& data = *input_set(c);
        mask = std::make_unique<GeneratedMask>(
            make_importance_block_mask(spec, data.host.q, data.host.k, c.heads));
      } else {
        mask = std::make_unique<GeneratedMask>(make_mask(spec));
      }
      mask_key = key;
    }
    return *mask;
  }
  std::shared_ptr<const InputSet> input_set(const Case& c) {
    const std::string data_key = data_key_of(c);
    if (!input_sets.count(data_key)) {
      // The grid varies heads and draws inside a seqlen: keep that seqlen's sets, at most 4.
      const std::string prefix = fmt::format("{}|", c.mask.seqlen);
      std::erase_if(input_sets, [&](const auto& kv) { return kv.first.rfind(prefix, 0) != 0; });
      if (input_sets.size() >= 4) input_sets.clear();
    }
    auto& data = input_sets[data_key];
    if (!data) {
      auto d = std::make_shared<InputSet>();
      d->host = make_inputs(shape_of(c), c.dtype, c.data_seed);
      d->q = pack(d->host.q, c.dtype);
      d->k = pack(d->host.k, c.dtype);
      d->v = pack(d->host.v, c.dtype);
      d->d_o = pack(d->host.d_o, c.dtype);
      data = std::move(d);
    }
    return data;
  }
  Instance& inputs(const Case& c) {
    const std::string key = mask_key + "|" + data_key_of(c);
    if (instance && instance->key == key) return *instance;
    instance.reset();
    auto in = std::make_unique<Instance>();
    in->key = key;
    in->shape = shape_of(c);
    in->dtype = c.dtype;
    in->data = input_set(c);
    in->checker = std::make_unique<Checker>(in->shape, mask->mask, c.dtype, in->data->host, opt.check,
                                            c.data_seed);
    instance = std::move(in);
    return *instance;
  }
  // After a device fault: everything on the device is gone; rebuild lazily.
  void reset_gpu() {
    for (auto it = backends.begin(); it != backends.end();) {
      if (it->second && it->second->capabilities().device == Device::gpu) it = backends.erase(it);
      else ++it;
    }
    gpu.reset();
    reset_gpu_device();
  }

  void measure(Backend& b, const Problem& p, Instance& in, Record& r);
};

void Runner::State::measure(Backend& b, const Problem& p, Instance& in, Record& r) {
  Executor& ex = executor(b.capabilities().device);
  const Direction dir = p.direction;
  const AttentionShape& s = in.shape;
  const std::size_t es = element_size(in.dtype);
  const std::size_t nq = s.q_elements(), nkv = s.kv_elements();
  const std::size_t nlse = std::size_t(s.heads_q) * std::size_t(s.seqlen_q);

  DeviceBuffers bufs(ex);
  ex.begin_case();
  struct EndCase {
    Executor& e;
    ~EndCase() { e.end_case(); }
  } end_case{ex};

  Tensors t;
  void* q = bufs.allocate(nq * es);
  void* k = bufs.allocate(nkv * es);
  void* v = bufs.allocate(nkv * es);
  t.q = q;
  t.k = k;
  t.v = v;
  t.o = bufs.allocate(nq * es);
  t.lse = static_cast<float*>(bufs.allocate(nlse * sizeof(float)));
  const InputSet& data = *in.data;
  ex.upload(q, data.q.data(), data.q.size());
  ex.upload(k, data.k.data(), data.k.size());
  ex.upload(v, data.v.data(), data.v.size());
  // Poison the outputs (all bits set: NaN in every dtype) so an unwritten element fails the check.
  ex.fill(t.o, 0xff, nq * es);
  ex.fill(t.lse, 0xff, nlse * sizeof(float));
  if (runs_backward(dir)) {
    void* d_o = bufs.allocate(nq * es);
    ex.upload(d_o, data.d_o.data(), data.d_o.size());
    t.d_o = d_o;
    t.dq = bufs.allocate(nq * es);
    t.dk = bufs.allocate(nkv * es);
    t.dv = bufs.allocate(nkv * es);
    ex.fill(t.dq, 0xff, nq * es);
    ex.fill(t.dk, 0xff, nkv * es);
    ex.fill(t.dv, 0xff, nkv * es);
  }
  ex.synchronize();

  std::unique_ptr<Plan> plan = b.prepare(p);
  r.issued_area = plan->issued_area();
  ex.synchronize();

  if (runs_forward(dir)) {
    auto ms = ex.time([&](Stream st) { plan->forward(t, st); }, opt.timing);
    PhaseResult f;
    f.timing = summarize(std::move(ms));
    f.tflops = r.flops.forward / (f.timing.median_ms * 1e-3) / 1e12;
    r.forward = f;
  } else {
    plan->forward(t, ex.stream());  // untimed: the saved O and LSE the backward starts from
  }
  plan->export_lse(t, ex.stream());
  ex.synchronize();
  const double fwd_peak = ex.phase_peak_gib();

  // Host copies of the saved forward outputs: checked now, and the backward check needs them.
  ex.pause_polling();
  HostTensors out;
  std::vector<std::byte> bytes(nq * es);
  out.o.resize(nq);
  ex.download(bytes.data(), t.o, nq * es);
  unpack(bytes, in.dtype, out.o);
  out.lse.resize(nlse);
  ex.download(out.lse.data(), t.lse, nlse * sizeof(float));
  CheckResult check;
  if (opt.check.enabled) in.checker->check_forward(out.o, out.lse, check);
  ex.resume_polling();

  double bwd_peak = -1;
  if (runs_backward(dir)) {
    ex.phase_peak_gib();  // the backward phase starts here
    auto ms = ex.time([&](Stream st) { plan->backward(t, st); }, opt.timing);
    PhaseResult bw;
    bw.timing = summarize(std::move(ms));
    bw.tflops = r.flops.backward / (bw.timing.median_ms * 1e-3) / 1e12;
    r.backward = bw;
    ex.synchronize();
    bwd_peak = ex.phase_peak_gib();
    ex.pause_polling();
    std::vector<std::byte> kvb(nkv * es);
    out.dq.resize(nq);
    out.dk.resize(nkv);
    out.dv.resize(nkv);
    ex.download(bytes.data(), t.dq, nq * es);
    unpack(bytes, in.dtype, out.dq);
    ex.download(kvb.data(), t.dk, nkv * es);
    unpack(kvb, in.dtype, out.dk);
    ex.download(kvb.data(), t.dv, nkv * es);
    unpack(kvb, in.dtype, out.dv);
    if (opt.check.enabled)
      in.checker->check_backward(out.o, out.lse, out.dq, out.dk, out.dv, check);
    ex.resume_polling();
  }
  plan.reset();
  bufs.release_all();

  if (fwd_peak >= 0) {
    r.memory.forward_gib = fwd_peak;
    if (bwd_peak >= 0) r.memory.backward_gib = bwd_peak;
    r.memory.case_gib = std::max(fwd_peak, bwd_peak);
  }
  if (opt.check.enabled) {
    r.check = check;
    if (!check.passed()) {
      r.status = Status::wrong;
      r.reason = check.failure();
    }
  }
}

Runner::Runner(RunOptions options, std::shared_ptr<const Environment> env)
    : state_(std::make_unique<State>()) {
  validate(options.timing);
  state_->opt = options;
  state_->env = std::move(env);
}

Runner::~Runner() = default;

void Runner::use_backend(std::string name, std::unique_ptr<Backend> backend) {
  state_->overrides[std::move(name)] = std::move(backend);
}

Record Runner::run(const Case& c) {
  State& st = *state_;
  Record r;
  r.c = c;
  r.env = st.env;
  r.timing_options = st.opt.timing;
  auto fail = [&](Status s, std::string why) {
    r.status = s;
    r.reason = std::move(why);
    r.forward.reset();
    r.backward.reset();
  };
  try {
    Backend& b = st.backend(c.backend);
    r.backend_version = b.version();
    const GeneratedMask& g = st.generated(c);
    r.mask = mask_stats(g);
    Problem p;
    p.shape = shape_of(c);
    p.mask = &g;
    p.dtype = c.dtype;
    p.direction = c.direction;
    if (auto why = check_support(b, p)) {
      fail(Status::unsupported, *why);
      return r;
    }
    r.flops = attention_flops(g.mask, c.heads);
    Instance& in = st.inputs(c);
    st.measure(b, p, in, r);
  } catch (const OutOfMemory& e) {
    fail(Status::oom, e.what());
  } catch (const Unsupported& e) {
    fail(Status::unsupported, e.what());
  } catch (const DeviceFault& e) {
    fail(Status::error, fmt::format("device fault (device reset): {}", e.what()));
    st.reset_gpu();
  } catch (const std::bad_alloc&) {
    fail(Status::oom, "host memory exhausted");
  } catch (const std::exception& e) {
    fail(Status::error, e.what());
  }
  return r;
}

std::vector<Record> Runner::run_all(std::span<const Case> cases,
                                    const std::function<void(const Record&, std::size_t)>& on_record) {
  std::vector<Record> out;
  out.reserve(cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    out.push_back(run(cases[i]));
    if (on_record) on_record(out.back(), i);
  }
  return out;
}

}  // namespace longattn::bench
