"""The training stages run by fit(): Lloyd-ALS and gradient descent (Adam / Riemannian SGD)."""
from __future__ import annotations

import math

import numpy as np
import torch

from . import als, losses, tt
from .riemannian import RiemannianSGD


def _cloud(cores):
    from tt_faiss.cloud import TTPointCloud

    return TTPointCloud(tt.to_public(cores))


def _bar(iters, desc, verbose):
    from tqdm.auto import tqdm

    return tqdm(range(iters), desc=desc, disable=not verbose, leave=False, dynamic_ncols=True)


def run_als(x, cores, cfg, rng, dev, log, out_of_time):
    """Lloyd-ALS: assign a fresh subsample (C++ beam search), then one exact ALS sweep."""
    from .fit import _sample_rows

    shape = tt.shape_of(cores)
    N = math.prod(shape)
    iters = int(cfg["als_iters"])
    m = min(int(cfg["als_sample"]), x.shape[0])
    alpha = float(cfg["als_alpha"])
    cores = [c.to(dev, torch.float64) for c in cores]
    first = last = None
    bar = _bar(iters, "tt_faiss ALS", log.verbose)
    for it in bar:
        if out_of_time():
            log.say(f"[tt_faiss.fit] ALS stopped by time_budget after {it} iterations")
            break
        beam = int(cfg["als_final_beam"] if it >= iters - int(cfg["als_final_iters"]) else cfg["als_beam"])
        xs = _sample_rows(x, m, rng)
        cloud = _cloud(cores)
        dist, I = cloud.search(xs, 1, beam)
        loss = float(dist[:, 0].mean())
        xt = torch.from_numpy(xs).to(dev)
        ids = torch.from_numpy(I[:, 0]).to(dev)
        counts, sums = als.accumulate(ids, xt, N, weight=alpha / m if alpha > 0 else 0.0)
        inv = None
        if alpha < 1.0:
            # inverse NN term (eq. 8) as pseudo-counts: TT point j is pulled to its nearest data row
            if cfg["als_inv_target"] == "empty":
                cand = torch.nonzero(torch.bincount(ids, minlength=N) == 0).squeeze(1).cpu().numpy()
            else:
                cand = np.arange(N)
            p = min(int(cfg["als_inv_points"]), cand.size)
            if p > 0:
                tt_ids = np.sort(rng.choice(cand, size=p, replace=False))
                pool = xs[:min(int(cfg["als_inv_pool"]), m)]
                pts = cloud.reconstruct(tt_ids)
                nn = losses.nearest_data(pts, pool)
                inv = float(((pts - pool[nn]) ** 2).sum(1).mean())
                als.accumulate(torch.from_numpy(tt_ids).to(dev), torch.from_numpy(pool[nn]).to(dev), N,
                               weight=(1.0 - alpha) / p, counts=counts, sums=sums)
        occupied = int((torch.bincount(ids, minlength=N) > 0).sum())
        cores = als.sweep(cores, counts, sums, float(cfg["ridge"]))
        entry = log.record("als", it, nn_loss=loss, inv_loss=inv, beam=beam,
                           occupied_frac_in_sample=occupied / N)
        first = entry if first is None else first
        last = entry
        bar.set_postfix(nn=f"{loss:.4g}", occ=f"{occupied / N:.2f}")
    bar.close()
    if first is not None:
        log.say(f"[tt_faiss.fit] ALS {last['iter'] + 1} it: NN loss {first['nn_loss']:.4g} -> "
                f"{last['nn_loss']:.4g} (before the last sweep), {last['seconds']:.1f}s")
    return cores


def run_sgd(x, cores, cfg, rng, gen, dev, log, out_of_time):
    """Gradient stage on sw_weight * SW + nn_weight * (alpha NN + (1 - alpha) NN_inv)."""
    from .fit import _sample_rows

    shape = tt.shape_of(cores)
    N = math.prod(shape)
    D = cores[0].shape[0]
    iters = int(cfg["sgd_iters"])
    b = min(int(cfg["batch"]), x.shape[0])
    alpha = float(cfg["alpha"])
    sw_w, nn_w = float(cfg["sw_weight"]), float(cfg["nn_weight"])
    opt_name = cfg["optimizer"]
    if opt_name not in ("adam", "rsgd"):
        raise ValueError(f"optimizer must be 'adam' or 'rsgd', got {opt_name!r}")
    cores = [c.detach().to(dev, torch.float32) for c in cores]
    if opt_name == "adam":
        lr = cfg["lr"]
        if lr is None:
            lr = 1e-3
        params = [c.clone().requires_grad_(True) for c in cores]
        opt = torch.optim.Adam(params, lr=float(lr))
    else:
        rel = 0.01 if cfg["lr"] is None else float(cfg["lr"])
        with torch.no_grad():
            lr = rel * float(tt.norm(cores))
        every = cfg["decay_every"] or max(1, iters // 4)
        opt = RiemannianSGD(lr, decay=float(cfg["lr_decay"]), decay_every=int(every))
    first = last = None
    bar = _bar(iters, f"tt_faiss SGD ({opt_name})", log.verbose)
    for it in bar:
        if out_of_time():
            log.say(f"[tt_faiss.fit] SGD stopped by time_budget after {it} iterations")
            break
        cur = params if opt_name == "adam" else cores
        cloud = _cloud(cur)
        xb = _sample_rows(x, b, rng)
        xt = torch.from_numpy(xb).to(dev)
        dist, I = cloud.search(xb, 1, int(cfg["nn_beam"]))
        ids = torch.from_numpy(I[:, 0]).to(dev)
        tt_ids = nn_of_tt = None
        if nn_w > 0 and alpha < 1.0:
            p = min(int(cfg["inv_points"]), N)
            tt_np = np.sort(rng.choice(N, size=p, replace=False))
            nn_of_tt = torch.from_numpy(losses.nearest_data(cloud.reconstruct(tt_np), xb)).to(dev)
            tt_ids = torch.from_numpy(tt_np).to(dev)
        u = losses.random_directions(int(cfg["sw_dirs"]), D, gen, device=dev) if sw_w > 0 else None
        sw_ids = None
        if sw_w > 0 and cfg["sw_tt_points"] is not None and int(cfg["sw_tt_points"]) < N:
            sw_ids = torch.from_numpy(rng.choice(N, size=int(cfg["sw_tt_points"]), replace=False)).to(dev)
        parts = {}

        def loss_fn(cs):
            total = 0.0
            if sw_w > 0:
                parts["sw"] = losses.sliced_wasserstein(xt, cs, u, sw_ids)
                total = total + sw_w * parts["sw"]
            if nn_w > 0:
                l_nn = losses.nn_loss(xt, cs, ids) if alpha > 0 else 0.0
                l_inv = losses.inverse_nn_loss(cs, tt_ids, xt, nn_of_tt) if alpha < 1 else 0.0
                parts["nn"], parts["inv"] = l_nn, l_inv
                total = total + nn_w * losses.nn_total(l_nn, l_inv, alpha)
            return total

        if opt_name == "adam":
            opt.zero_grad()
            total = loss_fn(params)
            total.backward()
            opt.step()
            total = float(total.detach())
        else:
            cores, total, _ = opt.step(loss_fn, cores)
        vals = {k: float(v.detach() if torch.is_tensor(v) else v) for k, v in parts.items()}
        entry = log.record("sgd", it, loss=total, nn_loss=float(dist[:, 0].mean()), **vals)
        first = entry if first is None else first
        last = entry
        bar.set_postfix(loss=f"{total:.4g}", nn=f"{entry['nn_loss']:.4g}")
    bar.close()
    if first is not None:
        log.say(f"[tt_faiss.fit] SGD ({opt_name}) {last['iter'] + 1} it: loss {first['loss']:.4g} -> "
                f"{last['loss']:.4g}, NN loss {first['nn_loss']:.4g} -> {last['nn_loss']:.4g}, "
                f"{last['seconds']:.1f}s")
    out = params if opt_name == "adam" else cores
    return [c.detach() for c in out]
