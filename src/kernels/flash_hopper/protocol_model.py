#!/usr/bin/env python3
# Model of the flash_hopper forward CTA's synchronisation (fwd_kernel.cuh): the producer thread,
# the two consumer warpgroups, mbarrier phases (k/v/q full and empty), TMA fills, the ping-pong
# named barriers (bar.sync / bar.arrive, 256 threads) and the persistent walk over units (tiles
# with 0..n chunks). Random interleavings of the three agents; checks that nothing deadlocks and
# that every GEMM reads the chunk it means to. Keep it in step with the kernel's waits and
# arrivals when they change:  python3 src/kernels/flash_hopper/protocol_model.py
import random, sys

class MBar:
    def __init__(s, count): s.count, s.pending, s.phases = count, count, 0
    def arrive(s, n=1):
        s.pending -= n
        assert s.pending >= 0
        if s.pending == 0: s.phases += 1; s.pending = s.count
    def ready(s, parity): return (s.phases & 1) != parity

class Named:
    def __init__(s): s.arrived, s.gen = 0, 0
def gen_producer(st, units, stages):
    ring_s, ring_p, qp = 0, 0, 0
    for u, n in enumerate(units):
        if n == 0: continue
        while not st.q_empty.ready(qp ^ 1): yield
        st.q_slot = u; st.q_full.arrive(); qp ^= 1
        for c in range(n):
            while not st.k_empty[ring_s].ready(ring_p ^ 1): yield
            st.k_slot[ring_s] = (u, c); st.k_full[ring_s].arrive()
            while not st.v_empty[ring_s].ready(ring_p ^ 1): yield
            st.v_slot[ring_s] = (u, c); st.v_full[ring_s].arrive()
            ring_s += 1
            if ring_s == stages: ring_s, ring_p = 0, ring_p ^ 1
        yield

def gen_consumer(st, w, units, stages, overlap, pingpong):
    def named_sync(bid):
        b = st.named[bid]
        g = b.gen; b.arrived += 128
        if b.arrived == 256: b.arrived = 0; b.gen += 1
        while b.gen == g: yield
    def named_arrive(bid):
        b = st.named[bid]; b.arrived += 128
        assert b.arrived <= 256
        if b.arrived == 256: b.arrived = 0; b.gen += 1
    def turn_begin():
        if pingpong: yield from named_sync(3 + w)
    def turn_end():
        if pingpong: named_arrive(3 + (w ^ 1))
    if pingpong and w == 1: named_arrive(3)
    rs, rp, qp = 0, 0, 0
    adv = lambda s, p: (0, p ^ 1) if s + 1 == stages else (s + 1, p)
    for u, n in enumerate(units):
        if n == 0: yield; continue
        while not st.q_full.ready(qp): yield
        assert st.q_slot == u; qp ^= 1
        if overlap:
            ks, kp = rs, rp
            while not st.k_full[ks].ready(kp): yield
            yield from turn_begin(); assert st.k_slot[ks] == (u, 0); turn_end()
            yield
            st.k_empty[ks].arrive(4)
            if n == 1: st.q_empty.arrive(4)
            ps, pp = ks, kp; ks, kp = adv(ks, kp)
            for c in range(1, n):
                while not st.k_full[ks].ready(kp): yield
                while not st.v_full[ps].ready(pp): yield
                yield from turn_begin()
                assert st.k_slot[ks] == (u, c) and st.v_slot[ps] == (u, c - 1), (st.k_slot, st.v_slot, u, c)
                turn_end()
                yield
                st.k_empty[ks].arrive(4)
                if c == n - 1: st.q_empty.arrive(4)
                yield
                st.v_empty[ps].arrive(4)
                ps, pp = ks, kp; ks, kp = adv(ks, kp)
            while not st.v_full[ps].ready(pp): yield
            yield from turn_begin(); assert st.v_slot[ps] == (u, n - 1); turn_end()
            yield
            st.v_empty[ps].arrive(4)
            rs, rp = ks, kp
        else:
            for c in range(n):
                while not st.k_full[rs].ready(rp): yield
                yield from turn_begin(); assert st.k_slot[rs] == (u, c); turn_end()
                yield
                st.k_empty[rs].arrive(4)
                if c == n - 1: st.q_empty.arrive(4)
                while not st.v_full[rs].ready(rp): yield
                yield from turn_begin(); assert st.v_slot[rs] == (u, c); turn_end()
                yield
                st.v_empty[rs].arrive(4)
                rs, rp = adv(rs, rp)
        yield  # epilogue
    if pingpong and w == 0: yield from named_sync(3)  # the last turn

class St: pass
def run(units, stages, overlap, pingpong, seed):
    rnd = random.Random(seed)
    st = St()
    st.q_full, st.q_empty = MBar(1), MBar(8)
    st.k_full = [MBar(1) for _ in range(stages)]; st.v_full = [MBar(1) for _ in range(stages)]
    st.k_empty = [MBar(8) for _ in range(stages)]; st.v_empty = [MBar(8) for _ in range(stages)]
    st.k_slot = [None] * stages; st.v_slot = [None] * stages; st.q_slot = None
    st.named = {3: Named(), 4: Named()}
    agents = [gen_producer(st, units, stages), gen_consumer(st, 0, units, stages, overlap, pingpong),
              gen_consumer(st, 1, units, stages, overlap, pingpong)]
    alive = list(agents); idle = 0
    snapshot = None
    while alive:
        a = rnd.choice(alive)
        try: next(a)
        except StopIteration: alive.remove(a)
        idle += 1
        if idle > 200000: raise RuntimeError(f"deadlock? units={units}")
    if pingpong: assert all(b.arrived == 0 for b in st.named.values()), "half-arrived barrier"
    return st

for trial in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3000):
    rnd = random.Random(trial)
    units = [rnd.choice([0, 1, 1, 2, 3, 5]) for _ in range(rnd.randint(1, 6))]
    stages = rnd.choice([2, 4])
    ov, pp = rnd.choice([(True, True), (True, False), (False, False), (False, True)])
    try:
        run(units, stages, ov, pp, trial)
    except Exception as e:
        print("FAIL", trial, units, stages, ov, pp, repr(e)); sys.exit(1)
print("ok")
