"""Random fault schedules over a simulated cluster, and the command line to replay one."""
from __future__ import annotations

import argparse
import logging
import random
from dataclasses import replace

from ckite.errors import CKiteError
from tests.simulation.cluster import SIM_SETTINGS, SimCluster


def run_random_schedule(seed: int, seconds: float = 30.0, size: int | None = None) -> SimCluster:
    """Run ``seconds`` of simulated time with a random mix of client load and faults, then heal
    everything and check that the cluster converges with no acknowledged write lost.

    Faults: message loss, duplication and reordering (random delays), partitions (majority/
    minority, isolated leader), crashes and restarts of any member (possibly a majority), and
    in lease-read runs read-only phases, immediate restarts of followers, leadership transfers,
    and a leader cut off from a minority only.
    """
    variant = random.Random(seed)
    size = size or variant.choice([3, 3, 5])
    # Half the runs turn pre-vote and check-quorum off: they must not be what keeps the cluster safe.
    protections = variant.random() < 0.5
    # A third of the runs change membership too: spare members are added and members removed.
    spares = variant.choice([0, 0, 2])
    # Most runs compact their logs often, with snapshots sent in small chunks through the faults.
    # Runs that change membership keep pre-vote: without it (and without check-quorum) a removed
    # member that missed its removal can depose every leader forever through a lagging member
    # (thesis §4.2.3) -- a liveness problem, which the convergence check would report.
    settings = replace(SIM_SETTINGS, pre_vote=protections or bool(spares), check_quorum=protections,
                       compaction_threshold=variant.choice([0, 8, 30, 30]),
                       snapshot_chunk_bytes=variant.choice([64, 512, 4096]))
    # Half the runs with check-quorum read from leader leases (thesis §6.4.1), with faults aimed
    # at leases on top (_lease_fault). Drawn last, so the other runs keep their schedules.
    if protections and variant.random() < 0.5:
        settings = replace(settings, lease_reads=True)
    cluster = SimCluster(seed, size, settings, spares=spares)
    rng = cluster.rng
    ids = cluster.ids
    next_fault = 0.5
    while cluster.now < seconds:
        cluster.run_until(cluster.now + rng.uniform(0.005, 0.040))
        leaders = cluster.leaders()
        target = leaders[0].member_id if leaders and rng.random() < 0.7 else rng.choice(ids)
        if rng.random() < cluster.write_share:
            cluster.client_write(target)
        else:
            cluster.client_read(target)
        if cluster.now >= next_fault:
            next_fault = cluster.now + rng.uniform(0.2, 1.5)
            _inject_fault(cluster, rng)
    heal_and_converge(cluster)
    return cluster


def _inject_fault(cluster: SimCluster, rng) -> None:
    ids = cluster.ids
    if cluster.settings.lease_reads and _lease_fault(cluster, rng):
        return
    if cluster.spares and rng.random() < 0.3:
        _change_membership(cluster, rng)
        return
    choice = rng.random()
    faults = cluster.network.faults
    if choice < 0.15:
        cluster.crash(rng.choice(ids))
    elif choice < 0.25:
        leaders = cluster.leaders()
        if leaders:
            cluster.crash(leaders[0].member_id)
    elif choice < 0.45:
        for member_id in ids:
            cluster.restart(member_id)
    elif choice < 0.60:
        shuffled = ids[:]
        rng.shuffle(shuffled)
        cut = rng.randint(1, len(ids) - 1)
        cluster.partition(set(shuffled[:cut]), set(shuffled[cut:]))
    elif choice < 0.70:
        leaders = cluster.leaders()
        if leaders:
            cluster.partition({leaders[0].member_id}, set(ids) - {leaders[0].member_id})
    elif choice < 0.85:
        cluster.heal()
    else:
        faults.drop = rng.choice([0.0, 0.05, 0.2, 0.4])
        faults.duplicate = rng.choice([0.0, 0.05, 0.2])
        faults.max_delay = rng.choice([0.005, 0.020, 0.080])


def _lease_fault(cluster: SimCluster, rng) -> bool:
    """The faults that matter to leader leases; True when one was injected instead of the usual.

    Read-only phases: while the log does not grow, a member cut off from the leader stays up to
    date, so only the vote refusals (not §5.4.1) keep it from being elected. A partial partition:
    the leader keeps its lease through a majority while a minority, cut off from it alone,
    campaigns among the very members the lease counts on. Rolling restarts: a follower restarts
    at once, forgetting when it last heard from the leader. Leadership transfers: the target's
    votes ignore the followers' refusal, whether or not the leader hears that it won.
    """
    if rng.random() < 0.25:
        cluster.write_share = 0.0 if cluster.write_share else 0.75
    leaders = cluster.leaders()
    choice = rng.random()
    if not leaders or choice >= 0.55:
        return False
    leader = leaders[0].member_id
    followers = sorted(m.member_id for m in cluster.up_members() if m.member_id != leader)
    if choice < 0.15:
        cluster.cut_off(leader, set(rng.sample(sorted(set(cluster.ids) - {leader}), len(cluster.ids) // 2)))
    elif choice < 0.25:
        try:
            leaders[0].consensus.request_leadership_transfer(None)
        except CKiteError:
            pass   # no other voter
    elif followers:
        member_id = rng.choice(followers)
        cluster.crash(member_id)
        cluster.restart(member_id)
    return True


def _change_membership(cluster: SimCluster, rng) -> None:
    """Add a member outside the leader's configuration, cancel the addition of one still catching
    up (no deadline ends it otherwise), or remove one of its voters."""
    leaders = cluster.leaders()
    if not leaders:
        return
    configuration = leaders[0].consensus.configuration
    outside = sorted(set(cluster.ids) - configuration.members)
    if configuration.promoting and rng.random() < 0.3:
        cluster.change_membership(remove=(rng.choice(sorted(configuration.promoting)),))
    elif outside and (rng.random() < 0.5 or len(configuration.voters) <= 2):
        cluster.change_membership(add=(rng.choice(outside),))
    else:
        cluster.change_membership(remove=(rng.choice(sorted(configuration.voters)),))


def run_lease_bridge_schedule(seed: int, seconds: float = 6.0) -> SimCluster:
    """The situation a leader lease must survive, forced rather than left to chance: three
    members with lease reads, no client writes, the leader cut off from one member only (which
    keeps campaigning) while the member between them restarts every 50-300 ms. Whenever two
    members lead, a write goes to the newer one and a read to the older one, so a lease that
    outlived the members' vote refusal shows as a stale read (or first as a Lease Safety failure).
    """
    cluster = SimCluster(seed, 3, replace(SIM_SETTINGS, lease_reads=True))
    cluster.run_until(1.0)
    leader = cluster.leaders()[0].member_id
    cut, bridge = [member_id for member_id in cluster.ids if member_id != leader]
    cluster.cut_off(leader, {cut})
    next_restart = cluster.now
    while cluster.now < seconds:
        cluster.run_until(cluster.now + 0.002)
        if cluster.now >= next_restart:
            cluster.crash(bridge)
            cluster.restart(bridge)
            next_restart = cluster.now + cluster.rng.uniform(0.05, 0.3)
        leaders = sorted(cluster.leaders(), key=lambda member: member.consensus.term)
        if len(leaders) == 2:
            cluster.client_write(leaders[1].member_id)
            cluster.client_read(leaders[0].member_id)
    return cluster


def heal_and_converge(cluster: SimCluster, limit: float = 20.0) -> None:
    """Heal every fault, then wait (simulated) for one leader and identical applied states."""
    cluster.heal()
    faults = cluster.network.faults
    faults.drop = faults.duplicate = 0.0
    faults.max_delay = 0.010
    for member_id in cluster.ids:
        cluster.restart(member_id)
    deadline = cluster.now + limit
    # Each acknowledged-and-applied entry of the final leader must reach every member.
    while cluster.now < deadline:
        cluster.run_until(cluster.now + 0.1)
        leaders = cluster.leaders()
        if len(leaders) == 1 and cluster.client_write(leaders[0].member_id):
            # Converged once this new write (and so everything before it) is applied everywhere:
            # commit indexes alone can lag behind what was committed before a crash.
            target = leaders[0].consensus.log.last_index
            cluster.run_until(cluster.now + 0.5)
            final = [m for m in cluster.up_members() if m.member_id in cluster.final_members()]
            if all(m.applied_index >= target for m in final):
                cluster.check_log_matching()
                cluster.check_convergence()
                return
    cluster.fail(f"no convergence within {limit}s of simulated time after healing")


def main() -> None:
    parser = argparse.ArgumentParser(description="Replay one simulated fault schedule, or soak a range of seeds.")
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--seed", type=int, help="replay this seed (a failure prints its traceback)")
    chosen.add_argument("--seeds", metavar="FIRST:END", help="run seeds FIRST..END-1 and summarize the failures")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=None, help="members (default: chosen by the seed)")
    parser.add_argument("--sessions", action="store_true",
                        help="the client-session schedules (tests/simulation/sessions.py) instead")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every role change and fault")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR, format="%(message)s")
    if args.sessions:
        _sessions_main(args)
        return
    if args.seed is not None:
        cluster = run_random_schedule(args.seed, args.seconds, args.size)
        print(f"seed {args.seed}: ok — {cluster.steps} steps, {len(cluster.acknowledged)} writes acknowledged, "
              f"{cluster.reads_checked} reads checked ({cluster.lease_reads} from a lease), "
              f"{len(cluster.leaders_by_term)} terms with a leader, "
              f"{cluster.network.sent} messages")
        return
    first, end = (int(part) for part in args.seeds.split(":"))
    failures, changes, chunks, acknowledged, lease_runs, lease_reads = [], 0, 0, 0, 0, 0
    for seed in range(first, end):
        try:
            cluster = run_random_schedule(seed, args.seconds, args.size)
        except Exception as exc:   # a safety violation or a crash of the core: report, go on
            failures.append(f"seed {seed}: {type(exc).__name__}: {exc}")
            continue
        changes += cluster.membership_changes
        chunks += cluster.sent["InstallSnapshot"]
        acknowledged += len(cluster.acknowledged)
        lease_runs += cluster.settings.lease_reads
        lease_reads += cluster.lease_reads
    print(f"seeds {first}..{end - 1} x {args.seconds:g} s: {len(failures)} failed; {changes} membership changes, "
          f"{chunks} InstallSnapshot chunks, {acknowledged} writes acknowledged; {lease_runs} runs with lease "
          f"reads ({lease_reads} reads from a lease)")
    for failure in failures:
        print("  " + failure)
    raise SystemExit(1 if failures else 0)


def _sessions_main(args: argparse.Namespace) -> None:
    from tests.simulation.sessions import run_session_schedule  # it builds on this module
    first, end = (args.seed, args.seed + 1) if args.seed is not None else (int(p) for p in args.seeds.split(":"))
    failures = []
    for seed in range(first, end):
        try:
            run = run_session_schedule(seed, args.seconds)
        except Exception as exc:
            if args.seed is not None:
                raise
            failures.append(f"seed {seed}: {type(exc).__name__}: {exc}")
            continue
        print(f"seed {seed}: ok — {len(run.acknowledged)} session requests acknowledged, "
              f"{run.duplicates_sent} sent again, {run.sleeper.refused} refused after the session expired")
    for failure in failures:
        print("  " + failure)
    raise SystemExit(1 if failures else 0)
