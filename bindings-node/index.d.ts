// Type definitions for drover (the N-API addon over the Rust core).
import { EventEmitter } from 'node:events';

/** Worker statuses: the MessageBus protocol numbers. */
export declare const WorkerStatuses: Readonly<{
    INITIALIZED: 1;
    STARTING: 2;
    STARTED: 3;
    STOPPING: 4;
    STOPPED: 5;
    SHUTTING_DOWN: 6;
    SHUTTED_DOWN: 7;
    FAILED: 8;
}>;
export type WorkerStatus = (typeof WorkerStatuses)[keyof typeof WorkerStatuses];

/** A master's status as `getStatusName()` returns it (and the 'status' event reports it). */
export type MasterStatus = 'INITIALIZED' | 'STARTING' | 'STARTED' | 'RELOADING' | 'STOPPING' | 'STOPPED' | 'SHUT_DOWN' | 'FAILED';
export declare const MasterStatuses: Readonly<{ [K in MasterStatus]: K }>;
/**
 * A master's status as drover 1.0's `getStatus()` returns it: `Master.STATUS_*`. 1 SHUTTED_DOWN
 * (also a new master), 2 STARTING, 3 STARTED (also while reloading), 4 STOPPING, 5 STOPPED (after a
 * failed start), 6 FAILED (ours: the restart policy gave up).
 */
export type MasterStatusNumber = 1 | 2 | 3 | 4 | 5 | 6;

export declare namespace ExitReasons {
    abstract class ExitReason<P = { code?: number; signal?: string }> {
        readonly payload: P;
        readonly name: string;
        /**
         * Whether the master asked for the exit (a reload, rescale, restart or shutdown). Such an
         * exit is never a NormalExit: AbnormalExit (any code, 0 too) or ExternalSignal, as drover
         * 1.0 reported it. Not enumerable: payloads print as 1.0's.
         */
        readonly requested: boolean;
        /**
         * How the process ended as core reports it in every face (C, Rust, the CLI): the class
         * differs from it only for an exit(0) the master asked for (AbnormalExit, kind NormalExit).
         */
        readonly kind: 'NormalExit' | 'AbnormalExit' | 'ExternalSignal';
    }
    /** Killed by a signal (anyone's, the master's too); `payload.signal` is its name, e.g. 'SIGKILL'. */
    class ExternalSignal extends ExitReason<{ signal: string }> {
        readonly signalNumber: number;
        readonly coreDumped: boolean;
    }
    /** The worker's own exit(0), nobody asked for it. */
    class NormalExit extends ExitReason<{ code: 0 }> {}
    /** A non-zero exit code, or any code of an exit the master asked for (`requested`). */
    class AbnormalExit extends ExitReason<{ code: number }> {}
}
/**
 * A duration: a positive number of milliseconds (`5000`), or a string with a unit (`'5s'`,
 * `'250ms'`, `'2m'`, `'1h 30m'`). Refused by name when not positive or past 1e12 ms.
 */
export type Duration = number | string;
/**
 * A size: a whole number of bytes, or a string with a unit: `'150MB'` / `'150M'` (powers of 1000),
 * `'150MiB'` / `'150Mi'` (powers of 1024), as Kubernetes writes them.
 */
export type Size = number | string;
export type AnyExitReason = ExitReasons.ExternalSignal | ExitReasons.NormalExit | ExitReasons.AbnormalExit;

/**
 * A master's options: drover 1.0's (`script`, `count`, `env`, `signals`, `schedulingPolicy`,
 * `restartTimeout`, `statusTimeout`) and the core's (camelCase). Every duration is a number of
 * **milliseconds** or a string with a unit (`'10s'`, `'250ms'`, `'1m 30s'`): see {@link Duration};
 * every size a number of bytes or a string with a unit: see {@link Size}.
 */
export interface MasterOptions {
    /** A JavaScript file run with this Node (`process.execPath`) unless `node` says otherwise. */
    script?: string;
    /** The node binary for `script`. */
    node?: string;
    /** A program to run instead of `script` (a worker in any language). */
    program?: string;
    /** Arguments of `program` (or extra arguments after `script`). */
    args?: string[];
    /** Number of workers (default: number of CPUs). */
    count?: number;
    /** Environment variables over the master's; numbers and booleans are stringified. */
    env?: Record<string, string | number | boolean>;
    cwd?: string;
    name?: string;
    /** Any JSON, handed to each worker in its welcome (`mb.meta.config`). */
    config?: unknown;
    /**
     * drover 1.0: the process signals this master acts on. Default `{ reload: 'SIGHUP', shutdown:
     * 'SIGTERM' }`: the reload signal calls `gracefulReload()`, the shutdown signal
     * `gracefulShutdown()`, after which — if nothing else listens for it — the process ends by that
     * signal as it would without drover. `false` (or `{}`) installs none. One process listener per
     * signal serves every master; the app's own `process.on` listeners keep working. Set once, here.
     */
    signals?: false | { reload?: NodeJS.Signals | false; shutdown?: NodeJS.Signals | false };
    /**
     * drover 1.0: `cluster.SCHED_NONE` (1, 1.0's default) or `cluster.SCHED_RR` (2); anything else is
     * an InvalidConfigurationError. Workers accept on the master's shared socket and the kernel
     * hands each connection to one of them (SCHED_NONE's behaviour) whichever is chosen: drover
     * never routes connections through the master. See README, "Compatibility with drover 1.0".
     */
    schedulingPolicy?: 1 | 2;
    /**
     * drover 1.0: ms, the timeout of each status change a worker is waited for: spawn to STARTED
     * (`startTimeout`) and `stop` to STOPPED (`stopTimeout`), unless those are given. Applied only
     * when given (1.0's documented 2000 ms default was never enforced by 1.0).
     */
    statusTimeout?: number;
    /**
     * drover 1.0: ms a worker being replaced or retired (restart, reload, rescale, shutdown) gets
     * from `quit` to its exit before it is sent SIGTERM: `quitTimeout`, unless that is given.
     * Applied only when given.
     */
    restartTimeout?: number;
    /** ms from spawn to STARTED (default 30000). */
    startTimeout?: Duration;
    /** ms from `stop` to STOPPED (default 10000). */
    stopTimeout?: Duration;
    /** ms from `quit` to the process's exit, then SIGTERM (default 5000). */
    quitTimeout?: Duration;
    /** ms from SIGTERM to SIGKILL (default 5000). */
    killTimeout?: Duration;
    /** The largest frame on a worker's channel, bytes. */
    maxFrameBytes?: number;
    /**
     * Microseconds a Rust or C worker's event loop spins after IPC traffic before it sleeps, to
     * answer the next message without a thread wake-up (0, the default: never). At most 10000.
     * Passed to every worker in `DROVER_BUSY_POLL_US`; Node workers and the Node master read their
     * channels on the JS thread and do not spin. Costs up to this much CPU per burst of messages,
     * none while idle.
     */
    busyPollUs?: number;
    /**
     * The shared store (PROTOCOL.md §5.6). `persistDir`: keep it in this directory (snapshot and
     * append-only log) so a restarted master finds it again; `fsync`: when a write reaches the
     * disk (default 'always': before it is acknowledged); `compactLogBytes`: compact the log past
     * this size (default 16 MiB).
     */
    store?: {
        /** 'embedded' (default) or 'redis' (with `url`, and `prefix`, default `drover:NAME:`). */
        backend?: 'embedded' | 'redis';
        url?: string;
        prefix?: string;
        persistDir?: string;
        fsync?: 'always' | 'everysec' | 'never';
        compactLogBytes?: Size;
    };
    /** Workers show themselves as `drover: GROUP #INSTANCE` in ps (`process.title`). Default false. */
    processTitle?: boolean;
    /**
     * Before a worker's HTTP server takes the shared socket (and reports STARTED), it answers
     * `requests` GETs of `path` on a private listener (header `x-drover-warmup`), within `timeout`
     * ms: no client request reaches a cold worker. Defaults: 1 request, '/', 10 s.
     */
    warmup?: { requests?: number; path?: string; timeout?: Duration };
    onProtocolError?: 'fail' | 'ignore';
    restart?: 'never' | 'on-failure' | 'always';
    /** ms before the first automatic restart (restart policy other than 'never'). */
    restartDelay?: Duration;
    /** Each further restart's delay is the previous one times this. */
    restartBackoffFactor?: number;
    /** ms, the largest restart delay. */
    restartMaxDelay?: Duration;
    /** ms a worker must stay up for its backoff to reset. */
    restartResetAfter?: Duration;
    /** At most this many automatic restarts within `maxRestartsWindow`, then the master is FAILED. */
    maxRestarts?: number;
    /** ms, the window of `maxRestarts`. */
    maxRestartsWindow?: Duration;
    reloadStrategy?: 'all-at-once' | 'rolling';
    reloadBatch?: number;
    /** ms between a worker's heartbeats (enables hang detection). */
    heartbeatInterval?: Duration;
    /**
     * **Milliseconds** of extra silence allowed after a missed heartbeat before the worker counts
     * as hung and is replaced (`3` is 3 ms, not 3 heartbeats).
     */
    heartbeatTolerance?: Duration;
    /** ms after STARTED at which a worker is recycled (replaced, successor first). */
    maxAge?: Duration;
    /** Resident memory, bytes, above which a worker is recycled. */
    maxMemoryBytes?: Size;
    /** ms between memory samples. */
    memoryCheckInterval?: Duration;
    /**
     * Sockets the master binds before starting workers and passes to each one systemd-style (fds
     * 3.., LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES; see `listenFds()`): 'host:port', '[v6]:port',
     * a bare port (every interface), 'unix:/path', each optionally 'name=ADDR', and optionally
     * followed by ',balance=MODE' (see `balance`). A bind failure fails `start()` with a
     * ListenError. Workers that call `server.listen(PORT)` need none of this.
     */
    listen?: string[];
    /**
     * Who takes the connections of the sockets workers ask for (`server.listen(PORT)`) and of
     * declared ones that do not say: 'shared' (default: every worker accepts, the kernel picks;
     * no cost in the master), 'round-robin' (the master accepts and hands each connection to the
     * next ready worker: an even share, as Node cluster's SCHED_RR), 'sticky' (the master hands
     * each client address to the same worker, for long-polling sessions), 'reuseport' (a
     * SO_REUSEPORT socket per worker slot, kept by the master across restarts: the kernel spreads
     * new connections by address hash, the master stays out of the data path).
     */
    balance?: 'shared' | 'round-robin' | 'sticky' | 'reuseport';
    /** Worker names by instance index: the worker in place `i` is `names[i]` (else `<group>-<id>`). */
    names?: string[];
    /**
     * How the master learns a worker is ready: 'message' (the MessageBus's sendStarted, default),
     * 'notify' (systemd's READY=1 on NOTIFY_SOCKET), 'node-ipc' (a PM2-style app's
     * `process.send('ready')`; a graceful stop sends it the message 'shutdown'), 'spawn' (as soon
     * as it runs).
     */
    ready?: 'message' | 'notify' | 'node-ipc' | 'spawn';
}

/** A listening socket the master holds: the address asked for and the address bound. */
export interface HeldListener {
    /** As asked, normalized: '[::]:8080', '127.0.0.1:0', 'unix:/run/app.sock'. */
    address: string;
    /** As bound: the real port for port 0. */
    local: string;
}

export interface WorkerDetails {
    id: number;
    /**
     * The place the worker fills in its group, 0..count-1 (`DROVER_INSTANCE` in its environment,
     * `NODE_APP_INSTANCE` too for Node programs): kept by a restarted worker, taken again by a
     * reload's new generation, where ids grow.
     */
    instance: number;
    /** Its name: the one configured for its instance (`names`), else `<group>-<id>`. */
    name: string;
    /** The application status the worker published (e.g. 'IDLE', 'PROCESSING'), if any. */
    appStatus: string | null;
    /** The counters the worker published, by name. */
    counters: Record<string, number>;
    /**
     * The runtime statistics of its last heartbeat that carried any (a Node worker's
     * {@link NodeHeartbeatStats}); `{}` before one.
     */
    stats: Record<string, number>;
    pid: number;
    status: WorkerStatus;
    statusName: keyof typeof WorkerStatuses;
    spawnedAt: Date;
    startedAt: Date | null;
    restarts: number;
    generation: number;
    rssBytes: number | null;
    alive: boolean;
    failure: string | null;
    exitReason: AnyExitReason | null;
}

/** What a Node worker's heartbeats carry (PROTOCOL.md §5.1), by their wire names. */
export interface NodeHeartbeatStats {
    /** Mean event-loop lag over the last heartbeat interval, ms. */
    event_loop_lag_ms: number;
    /** Its 99th percentile, ms. */
    event_loop_lag_p99_ms: number;
    /** The longest lag over the interval, ms (a loop blocked for 1 s: about 1000). */
    event_loop_lag_max_ms: number;
    /** Garbage collections since the bus connected, and their total ms. */
    gc_count: number;
    gc_ms: number;
}

/**
 * What a recycle predicate sees: the heartbeat's statistics (a Node worker's
 * {@link NodeHeartbeatStats}; other workers send their own or none) and the resident memory.
 */
export type RecycleStats = Partial<NodeHeartbeatStats> & { rss_bytes: number | null; [name: string]: number | null | undefined };

/** True or a reason (a string) to replace the worker; false / null / undefined to keep it. */
export type RecyclePredicate = (stats: RecycleStats, worker: WorkerDetails) => boolean | string | null | undefined;

/** Options of a store write. */
export interface StoreSetOptions {
    /** Milliseconds after which the value is removed (and its watchers told). */
    ttl?: number;
}

/**
 * The master's shared store (PROTOCOL.md §5.6): one JSON tree addressed by dot paths
 * ('users.42.name'; '' is the whole tree). Wrong argument types reject with TypeError; refusals
 * (bad path, past a bound) with RequestError ('bad_request', 'overloaded').
 */
export interface Store {
    /** The value at `path`, or null. */
    get<T = any>(path: string): Promise<T | null>;
    set(path: string, value: unknown, options?: StoreSetOptions): Promise<void>;
    /** Resolves with whether there was a value. */
    delete(path: string): Promise<boolean>;
    /** Sets `value` only if the value there equals `expected` (null: absent); resolves with whether it did. */
    cas(path: string, expected: unknown, value: unknown, options?: StoreSetOptions): Promise<boolean>;
    /** The keys directly below `path` ('' / absent: the top level), sorted. */
    keys(path?: string): Promise<string[]>;
    /**
     * A worker's: `callback(value, path)` for each change at, below or above `path`, in order
     * (value null: deleted or expired). Resolves with the watch's number. The master's rejects
     * (RequestError 'bad_request'): its user reads the store directly.
     */
    watch(path: string, callback: (value: any, path: string) => void): Promise<number>;
    /** Resolves with whether `watch` was this side's. */
    unwatch(watch: number): Promise<boolean>;
}

/** Options of a cache load. */
export interface CacheLoadOptions {
    /** Milliseconds after which the value is loaded again. */
    ttl?: number;
}

/** The cache every worker of a master shares (PROTOCOL.md §5.7). */
export interface Cache {
    /**
     * The value of `key`, loaded with `loader()` when nobody has: of all callers missing it at
     * once, in any worker, one runs its loader and the others wait for its value. A failing loader
     * rejects every waiter (RequestError 'handler_failed'; its own caller gets its error) and the
     * next call loads again.
     */
    getOrLoad<T = any>(key: string, loader: () => T | Promise<T>, options?: CacheLoadOptions): Promise<T>;
    /** Removes `key`'s loaded value; resolves with whether there was one. */
    delete(key: string): Promise<boolean>;
}

/** `gatherStatuses()`'s answer: by worker id, by status name, the value or `{ error }`. */
export type GatheredStatuses = Record<string, Record<string, any>>;

export interface ExitInfo {
    pid: number;
    /** Whether the master had asked the worker to end. */
    requested: boolean;
    /** The last status the worker had. */
    lastStatus: WorkerStatus;
}

/** A master's events and their listener arguments: `on()`, `once()`, `emit()` are typed by it. */
export interface MasterEvents {
    'worker-exit': [reason: AnyExitReason, workerId: number, info: ExitInfo];
    'worker-status': [workerId: number, status: WorkerStatus, previous: WorkerStatus, pid: number];
    status: [status: MasterStatus, previous: MasterStatus];
    message: [message: any, workerId: number, pid: number];
    'protocol-error': [error: ProtocolError, workerId: number];
    'worker-failed': [error: WorkerFailedError, workerId: number];
    /** Protocol errors and worker failures; emitted only while someone listens. */
    error: [error: ProtocolError | WorkerFailedError, workerId: number];
    /** `stats`: what the heartbeat carried (a Node worker's {@link NodeHeartbeatStats}), `{}` if nothing. */
    heartbeat: [workerId: number, info: { pid: number; rssBytes: number | null; stats: Record<string, number> }];
    'worker-restarting': [workerId: number, info: { delayMs: number; restarts: number }];
    'worker-recycling': [workerId: number, reason: string];
    /** A worker answered a reconfigure: applied (`error` null) or refused. */
    'worker-reconfigured': [workerId: number, info: { pid: number; version: number; error: string | null }];
    'gave-up': [info: { restarts: number; windowMs: number }];
    /** The group went out of rotation (ECV: markDown(), a monitor) or back in; its workers run on. */
    rotation: [info: Rotation & { message: string | null }];
    /** An event of a newer core this layer does not know, as is. */
    event: [event: Record<string, unknown>];
}

/** An ECV monitor's options (the `drover` command's `ecv` key). */
export interface EcvOptions {
    /** `http://HOST:PORT/PATH` of a worker's health page. */
    url: string;
    /** A status code, or a regular expression the body of a 2xx answer must match; default any 2xx. */
    validator?: number | string;
    /** ms or "5s"; default 5 s, from 100 ms to 1 h. */
    interval?: number | string;
    /** ms or "2s"; default 2 s, at most 60 s. */
    timeout?: number | string;
    /** Default 1, at most 1000. */
    failuresBeforeDown?: number;
}

/** Whether a group is in rotation (ECV), and each cause when it is not. */
export interface Rotation {
    inRotation: boolean;
    /** Marked down by hand (markDown()) and not marked up since. */
    manual: boolean;
    /** The ECV monitor's last failure while it judges the group down. */
    monitor: string | null;
}

export declare class Master extends EventEmitter<MasterEvents> {
    static readonly STATUS_SHUTTED_DOWN: 1;
    static readonly STATUS_STARTING: 2;
    static readonly STATUS_STARTED: 3;
    static readonly STATUS_STOPPING: 4;
    static readonly STATUS_STOPPED: 5;
    /** Ours: the restart policy gave up. */
    static readonly STATUS_FAILED: 6;
    constructor(options: MasterOptions);
    readonly name: string;
    /** Rejects with AlreadyInitializedError unless INITIALIZED or STOPPED (after a failed start). */
    start(): Promise<void>;
    /** drover 1.0's number: one of `Master.STATUS_*`. */
    getStatus(): MasterStatusNumber;
    /** Who leads leadership `key` (PROTOCOL.md §5.10): `{ leader, term }`, or null when no worker joined it. */
    leader(key: string): { leader: number | null; term: number } | null;
    /** Our status name (finer than 1.0's: INITIALIZED, RELOADING, SHUT_DOWN are told apart). */
    getStatusName(): MasterStatus;
    /** A copy of the options in force (as given, merged by gracefulReload, `count` as rescaled). */
    getConfig(): MasterOptions;
    /** Every worker's status; a worker whose process exited from STARTED (or before) is FAILED. */
    getWorkersStatuses(): WorkerStatus[];
    getWorkers(): WorkerDetails[];
    /** Resolves with the change in the number of workers; `count <= 0` rejects with InvalidArgumentError. */
    rescale(count: number): Promise<number>;
    /** `options` are merged over the options in force (top-level keys), then in force. */
    gracefulReload(options?: Partial<MasterOptions>): Promise<void>;
    /** Rejects with InappropriateConditionError if never started, or if a shutdown was already asked for. */
    gracefulShutdown(): Promise<void>;
    /** Callable at any time, any number of times. */
    hardShutdown(): Promise<void>;
    /**
     * Resolves with true once the worker is replaced; with false, doing nothing, for an id the
     * master no longer has or while it does not run (waits for a start or reload to end first).
     */
    restartWorkerById(id: number): Promise<boolean>;
    /** drover's signal policy: SIGHUP reload, SIGTERM/SIGINT graceful, a 2nd SIGINT hard. */
    handleSignal(signal: NodeJS.Signals | number): Promise<'Reload' | 'GracefulShutdown' | 'HardShutdown' | 'Ignore'>;
    send(id: number, message: unknown): Promise<void>;
    broadcast(message: unknown): Promise<number>;
    /** Takes the group out of rotation by hand (ECV): health checks say so; the workers run on. */
    markDown(): void;
    /** Lifts markDown(): in rotation again unless an ECV monitor judges the group down. */
    markUp(): void;
    getRotation(): Rotation;
    /** Runs an ECV monitor (PROTOCOL.md §5.9); throws InvalidConfigurationError naming the field. */
    monitorEcv(options: EcvOptions): { stop(): void };
    /**
     * Registers (or replaces) handler `name` for requests to `'master'`, from workers or from
     * `request('master', ...)` (then `fromWorkerId` is 0). The result (or the promise's value) is
     * the answer, as JSON; a throw or a rejection is the asker's RequestError `'handler_failed'`
     * with its message. Throws TypeError for a wrong type, RequestError for a bad name.
     */
    handle(name: string, handler: RequestHandler): this;
    /**
     * Calls handler `name` of `target` with `args`; resolves with its result (for `'all'`, a list
     * of {@link GatheredResult}), or rejects with a RequestError carrying its `code`.
     */
    request<T = any>(target: RequestTarget, name: string, args?: unknown, options?: RequestOptions): Promise<T>;
    /** Every listening socket the master holds (declared, or asked for by workers). */
    /** (Not `listeners()`: that is EventEmitter's.) */
    getListeningSockets(): HeldListener[];
    /** The shared store its workers reach with `mb.store`, read and written directly. */
    readonly store: Store;
    /**
     * Calls every worker's status functions (`mb.registerStatus`) and gathers them; a worker that
     * fails or does not answer within `options.timeout` ms has `{ error }` in its place.
     */
    gatherStatuses(options?: RequestOptions): Promise<GatheredStatuses>;
    /**
     * Replaces (make-before-break, one at a time) each STARTED worker `predicate` condemns; asked
     * at each of its heartbeats (set `heartbeatInterval`), acted on at the next check
     * (`memoryCheckInterval`). Set it before `start()` (it takes effect from the next start or
     * operation). Throws TypeError for a non-function.
     */
    recycleWhen(predicate: RecyclePredicate): this;
    /**
     * Pushes a new user config to every worker without restarting them; resolves with each
     * worker's answer. Later workers get it in their welcome.
     */
    reconfigure(config: unknown, options?: { timeout?: number }): Promise<ReconfigureAck[]>;
    /** Runs `hook` before each start's first spawn; a throw or rejection fails the start. */
    preStart(hook: () => unknown): this;
}

/** One worker's answer to `Master.reconfigure`. */
export interface ReconfigureAck {
    id: number;
    name: string;
    instance: number;
    pid: number;
    outcome: 'applied' | 'refused' | 'timeout' | 'gone';
    /** With 'refused': the worker's reason. */
    error?: string;
}

export declare const MasterFactory: {
    create(options: MasterOptions): Master;
};

export interface WorkerMeta {
    id: number;
    name: string;
    group: string;
    config: unknown;
    max_frame_bytes: number;
    heartbeat_ms?: number;
}

/**
 * Where a request or a worker-to-worker message goes: `'master'`, `'worker:ID'`, `'name:NAME'`,
 * `'any'` (one worker that declared the handler, in turn), `'all'` (every one, the asker
 * excepted), a worker id, `{ worker: ID }` or `{ name: NAME }`.
 */
export type RequestTarget = 'master' | 'any' | 'all' | `worker:${number}` | `name:${string}` | number | { worker: number } | { name: string };

/** A request handler: its arguments and the asking worker's id (0: the master). */
export type RequestHandler = (args: any, from: number) => unknown;

export interface RequestOptions {
    /** Milliseconds to wait for the answer (default 30 000, at most 600 000): then `'timeout'`. */
    timeout?: number;
}

/** Core's codes of a failed request (a newer version may add codes). */
export type RequestErrorCode =
    | 'no_such_handler'
    | 'no_such_target'
    | 'timeout'
    | 'target_gone'
    | 'handler_failed'
    | 'overloaded'
    | 'bad_request'
    | 'master_gone'
    | 'unknown';

/** One worker's answer to a request to `'all'`. */
export type GatheredResult =
    | { worker: number; result: any }
    | { worker: number; error: { code: RequestErrorCode; message: string } };

/** A MessageBus's events and their listener arguments. */
export interface MessageBusEvents {
    stop: [];
    quit: [];
    close: [];
    message: [message: any];
    /** A message another worker sent with `sendTo`, and that worker's id. */
    'worker-message': [data: any, fromWorkerId: number];
    /**
     * A connection the master accepted on a balanced socket this process asked for with
     * `mb.listen()` itself (a server that listened through `server.listen(PORT)` gets its own
     * connections as 'connection' events instead). The fd is yours: `new net.Socket({ fd })`.
     */
    connection: [fd: number, info: { listener: string; remote: string | null }];
    connected: [meta: WorkerMeta];
    /**
     * A new user config from the master: apply it, then `ack()` (applied) or `ack(error)`
     * (refused, the error's message as the reason). Without a listener it is refused.
     */
    reconfigure: [config: any, ack: (error?: Error | string | null) => void];
    /** The master closed the channel (with the protocol error, if that is why). */
    disconnect: [error: MessageBusError | null];
    error: [error: MessageBusError | NotAWorkerError];
    /** Who leads a leadership this worker joined (`leaderJoin`): on joining and at each change. */
    leader: [change: LeaderChange & { key: string }];
}

/** A leadership's leader (null: nobody, for now), its term, and whether it is this worker. */
export interface LeaderChange {
    leader: number | null;
    term: number;
    you: boolean;
}

/** A subscription may have missed events: those after `lastData`, until the next one delivered. */
export interface ClusterGap {
    topic: unknown;
    reason: 'leader-changed' | 'dropped';
    lastData: unknown;
    term: number;
    /** With reason 'dropped': how many. */
    missed?: number;
}

export interface ClusterClientEvents {
    leader: [change: LeaderChange];
    gap: [gap: ClusterGap];
    resubscribed: [info: { topic: unknown; term: number }];
    error: [error: Error];
}

export interface ClusterOptions {
    /** The leadership key (the client's name), the same in every process. */
    name: string;
    /** The real client's constructor arguments (in the leader). */
    args?: unknown[];
    /** Method names created on the client as `invoke(name, ...args)`. */
    delegates?: string[];
    /** Milliseconds a call may wait for a leader and its answer (default 30000). */
    timeout?: number;
    /** Calls waiting per client (default 1024; past it: RequestError 'overloaded'). */
    maxPendingInvokes?: number;
    /** Subscriptions a leader forwards to (default 1024). */
    maxSubscriptions?: number;
    /** Events on their way to one follower (default 256; past it: dropped, told as a gap). */
    maxForwardQueue?: number;
}

/** A client of which only the elected leader process holds the real one (`MessageBus.cluster`). */
export declare class ClusterClient extends EventEmitter<ClusterClientEvents> {
    readonly name: string;
    readonly isLeader: boolean;
    readonly leader: number | null;
    ready(): Promise<void>;
    invoke<T = any>(method: string, ...args: unknown[]): Promise<T>;
    publish(topic: unknown, data: unknown): Promise<unknown>;
    subscribe(topic: unknown, listener: (data: any) => void): Promise<void>;
    unsubscribe(topic: unknown, listener: (data: any) => void): Promise<void>;
    close(): Promise<void>;
    [delegate: string]: unknown;
}

export interface MessageBusOptions {
    /**
     * Whether `server.listen(PORT)` (every TCP port form of net.Server's listen, so http, https,
     * express...) gets the master's shared socket for that address instead of binding its own, as
     * in Node's cluster. Default true. Paths, fds, handles and `exclusive`/`ipv6Only`/`reusePort`
     * listens are Node's own either way.
     */
    sharedListen?: boolean;
    /**
     * As drover 1.0: SIGTERM and SIGINT do not end this worker while it is in service (from
     * sendStarted until the master's stop or quit); its master stops it. Default true.
     */
    ignoreSignals?: boolean;
}

/** A listening socket handed over by the master. */
export interface ListeningSocket {
    /** The file descriptor, yours now: `server.listen({ fd })` takes it over. */
    fd: number;
    /** The address it is bound to, e.g. '[::]:8080'. */
    local: string;
    /**
     * 'round-robin' or 'sticky' when the master accepts the connections itself: do not accept
     * on `fd` (close it); they come as the bus's 'connection' events. 'reuseport': `fd` is this
     * worker's own SO_REUSEPORT socket: accept on it, and serve the 'connection' events too.
     */
    balance: string | null;
}

export declare class MessageBus extends EventEmitter<MessageBusEvents> {
    /**
     * Throws NotAWorkerError outside a process started by a drover master. From here on,
     * `server.listen(PORT)` shares the master's socket (unless `sharedListen: false`).
     */
    constructor(options?: MessageBusOptions);
    /**
     * Asks the master for its socket on `address` ('host:port', '[v6]:port', a port, 'unix:/path');
     * every worker asking for the same address shares one. Rejects with ListenError.
     */
    listen(address: string | number): Promise<ListeningSocket>;
    /** What the master said about this worker, once connected. */
    meta: WorkerMeta | null;
    /**
     * Bound: usable as a callback, e.g. `server.listen(port, mb.sendStarted)`. Each send resolves
     * once written to the channel (as drover 1.0's); ignoring the promise is safe.
     */
    sendStarted(callback?: unknown): Promise<void>;
    sendStopped(callback?: unknown): Promise<void>;
    sendShuttedDown(callback?: unknown): Promise<void>;
    sendMessage(message: unknown): Promise<void>;
    /**
     * Registers (or replaces) handler `name` and declares this worker's handlers to the master.
     * `from` is the asking worker's id (0: the master). The result (or the promise's value) is the
     * answer; a throw or a rejection is the asker's RequestError `'handler_failed'`.
     */
    handle(name: string, handler: RequestHandler): this;
    /** Calls handler `name` of `target`, routed by the master; rejects with a RequestError. */
    request<T = any>(target: RequestTarget, name: string, args?: unknown, options?: RequestOptions): Promise<T>;
    /**
     * Sends `data` to other workers (their `'worker-message'` event); resolves with how many it
     * was written to, rejects with a RequestError (`'no_such_target'` for an unknown or dead one).
     */
    sendTo(target: RequestTarget, data: unknown): Promise<number>;
    /** The master's shared store (clusterfy's storage). */
    readonly store: Store;
    /** The cache every worker shares, with single-flight `getOrLoad` (cluster2's). */
    readonly cache: Cache;
    /**
     * Registers status function `name` (cluster2's status registry) for the master's
     * `gatherStatuses()`; declared as handler `status.<name>`.
     */
    registerStatus(name: string, fn: () => unknown): this;
    /**
     * Publishes the application status (null clears it; at most 64 bytes) and counters (at most
     * 32), shown in the master's `getWorkers()`, `drover status` and /metrics. TypeError for a
     * wrong type, RangeError past a bound.
     */
    setAppStatus(status: string | null, counters?: Record<string, number>): Promise<void>;
    /** Joins leadership `key`: the master elects one STARTED participant ('leader' events). */
    leaderJoin(key: string): Promise<{ leader: number | null; term: number }>;
    /** Lets go of leading `key` (after releasing what only the leader holds). */
    leaderResign(key: string): Promise<{ leader: number | null; term: number }>;
    /** Leaves leadership `key`. */
    leaderLeave(key: string): Promise<{ leader: number | null; term: number }>;
    /** A client only the leader process creates (`new DataClient(...options.args)`); see ClusterClient. */
    cluster(DataClient: new (...args: any[]) => any, options: ClusterOptions): ClusterClient;
    flush(): Promise<void>;
    /** Flushes and closes; the bus no longer keeps the process alive. Idempotent. */
    close(): Promise<void>;
}

export interface DrainOptions {
    /** Give up after this many ms and destroy the connections left (default 10000). */
    timeout?: number;
    /**
     * An idle keep-alive connection is closed only once it has been quiet this long (default 500
     * ms): a client that just got an answer is likely to send its next request any moment, and
     * closing under it would lose that request. See docs/DRAINING.md.
     */
    idleGrace?: number;
}

export interface DrainResult {
    /** Connections open when the drain began. */
    connections: number;
    /** Idle connections closed by the drain (the others closed after a `Connection: close` answer). */
    closedIdle: number;
    /** Connections destroyed at the timeout. */
    destroyed: number;
    timedOut: boolean;
    /** How long the drain took. */
    ms: number;
}

/**
 * Stops an HTTP server without losing a request: closes this worker's copy of the listening
 * socket (the master keeps the shared one; new connections go to other workers), answers every
 * further request with `Connection: close`, closes idle connections once no request can be racing,
 * and resolves when the last connection is gone or at the timeout. Use it in the stop handler:
 * `mb.on('stop', async () => { await drain(server); mb.sendStopped(); })`.
 */
export declare function drain(server: import('node:net').Server, options?: DrainOptions): Promise<DrainResult>;

/** Sockets passed systemd-style (a master's `listen` option): `[{ fd, name }]`, or [] if none. */
export declare function listenFds(): { fd: number; name: string }[];

export declare class DroverError extends Error {}
export declare class InvalidConfigurationError extends DroverError {}
/** drover 1.0's: an invalid argument, e.g. `rescale(0)` (`size`). */
export declare class InvalidArgumentError extends DroverError {
    size?: number;
}
export declare class InappropriateConditionError extends DroverError {
    operation: string;
    status: MasterStatus;
}
/** drover 1.0's: start() on a master that is started or starting. */
export declare class AlreadyInitializedError extends InappropriateConditionError {}
/** drover 1.0's: drover used in the wrong kind of process (NotAWorkerError is one). */
export declare class InvalidClusterContextError extends DroverError {}
export declare class WorkerStatusError extends DroverError {
    workerId: number;
    pid: number | null;
    failure: string;
    exitReason?: { kind: string; code?: number; signal?: string };
}
export declare class WorkerNotFoundError extends DroverError {
    workerId: number;
}
export declare class MessageDeliveryError extends DroverError {}
export declare class OperationCancelledError extends DroverError {
    operation: string;
}
export declare class ReloadRolledBackError extends DroverError {}
export declare class ReconfigureError extends DroverError {}
export declare class PreStartError extends DroverError {
    reason: string;
}
export declare class ProtocolError extends DroverError {
    workerId: number;
    pid: number;
}
export declare class WorkerFailedError extends DroverError {
    workerId: number;
    pid: number | null;
    failure: { kind: string; [k: string]: unknown };
}
export declare class NotAWorkerError extends InvalidClusterContextError {}
export declare class MessageBusError extends DroverError {}
/** The master could not bind a socket; Node's fields of a failed listen. */
/** A request or a `sendTo` failed; `code` says how (the message is the handler's own for `'handler_failed'`). */
export declare class RequestError extends DroverError {
    code: RequestErrorCode;
}
export declare class ListenError extends DroverError {
    /** e.g. 'EADDRINUSE', 'EACCES'. */
    code?: string;
    /** Negative, as Node's: -98 for EADDRINUSE. */
    errno?: number;
    syscall: 'listen';
    /** 'host:port' as the master tried to bind it. */
    address?: string;
    /** The port asked for (transparent listen). */
    port?: number;
}
