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

export type MasterStatus = 'INITIALIZED' | 'STARTING' | 'STARTED' | 'RELOADING' | 'STOPPING' | 'STOPPED' | 'SHUT_DOWN' | 'FAILED';
export declare const MasterStatuses: Readonly<{ [K in MasterStatus]: K }>;

export declare namespace ExitReasons {
    abstract class ExitReason<P = { code?: number; signal?: string }> {
        readonly payload: P;
        readonly name: string;
    }
    /** Killed by a signal; `payload.signal` is its name, e.g. 'SIGKILL'. */
    class ExternalSignal extends ExitReason<{ signal: string }> {
        readonly signalNumber: number;
        readonly coreDumped: boolean;
    }
    /** exit(0). */
    class NormalExit extends ExitReason<{ code: 0 }> {}
    /** A non-zero exit code. */
    class AbnormalExit extends ExitReason<{ code: number }> {}
}
export type AnyExitReason = ExitReasons.ExternalSignal | ExitReasons.NormalExit | ExitReasons.AbnormalExit;

/** A master's options: drover's (`script`, `count`, `env`) and the core's (camelCase, milliseconds). */
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
    startTimeout?: number;
    stopTimeout?: number;
    quitTimeout?: number;
    killTimeout?: number;
    maxFrameBytes?: number;
    /**
     * Microseconds a Rust or C worker's event loop spins after IPC traffic before it sleeps, to
     * answer the next message without a thread wake-up (0, the default: never). At most 10000.
     * Passed to every worker in `DROVER_BUSY_POLL_US`; Node workers and the Node master read their
     * channels on the JS thread and do not spin. Costs up to this much CPU per burst of messages,
     * none while idle.
     */
    busyPollUs?: number;
    onProtocolError?: 'fail' | 'ignore';
    restart?: 'never' | 'on-failure' | 'always';
    restartDelay?: number;
    restartBackoffFactor?: number;
    restartMaxDelay?: number;
    restartResetAfter?: number;
    maxRestarts?: number;
    maxRestartsWindow?: number;
    reloadStrategy?: 'all-at-once' | 'rolling';
    reloadBatch?: number;
    heartbeatInterval?: number;
    heartbeatTolerance?: number;
    maxAge?: number;
    maxMemoryBytes?: number;
    memoryCheckInterval?: number;
    /**
     * Sockets the master binds before starting workers and passes to each one systemd-style (fds
     * 3.., LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES; see `listenFds()`): 'host:port', '[v6]:port',
     * a bare port (every interface), 'unix:/path', each optionally 'name=ADDR'. A bind failure
     * fails `start()` with a ListenError. Workers that call `server.listen(PORT)` need none of this.
     */
    listen?: string[];
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
    heartbeat: [workerId: number, info: { pid: number; rssBytes: number | null }];
    'worker-restarting': [workerId: number, info: { delayMs: number; restarts: number }];
    'worker-recycling': [workerId: number, reason: string];
    'gave-up': [info: { restarts: number; windowMs: number }];
    /** An event of a newer core this layer does not know, as is. */
    event: [event: Record<string, unknown>];
}

export declare class Master extends EventEmitter<MasterEvents> {
    constructor(options: MasterOptions);
    readonly name: string;
    start(): Promise<void>;
    getStatus(): MasterStatus;
    getWorkersStatuses(): WorkerStatus[];
    getWorkers(): WorkerDetails[];
    rescale(count: number): Promise<void>;
    gracefulReload(options?: MasterOptions): Promise<void>;
    gracefulShutdown(): Promise<void>;
    hardShutdown(): Promise<void>;
    restartWorkerById(id: number): Promise<void>;
    /** drover's signal policy: SIGHUP reload, SIGTERM/SIGINT graceful, a 2nd SIGINT hard. */
    handleSignal(signal: NodeJS.Signals | number): Promise<'Reload' | 'GracefulShutdown' | 'HardShutdown' | 'Ignore'>;
    send(id: number, message: unknown): Promise<void>;
    broadcast(message: unknown): Promise<number>;
    /** Every listening socket the master holds (declared, or asked for by workers). */
    /** (Not `listeners()`: that is EventEmitter's.) */
    getListeningSockets(): HeldListener[];
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

/** A MessageBus's events and their listener arguments. */
export interface MessageBusEvents {
    stop: [];
    quit: [];
    close: [];
    message: [message: any];
    connected: [meta: WorkerMeta];
    /** The master closed the channel (with the protocol error, if that is why). */
    disconnect: [error: MessageBusError | null];
    error: [error: MessageBusError | NotAWorkerError];
}

export interface MessageBusOptions {
    /**
     * Whether `server.listen(PORT)` (every TCP port form of net.Server's listen, so http, https,
     * express...) gets the master's shared socket for that address instead of binding its own, as
     * in Node's cluster. Default true. Paths, fds, handles and `exclusive`/`ipv6Only`/`reusePort`
     * listens are Node's own either way.
     */
    sharedListen?: boolean;
}

/** A listening socket handed over by the master. */
export interface ListeningSocket {
    /** The file descriptor, yours now: `server.listen({ fd })` takes it over. */
    fd: number;
    /** The address it is bound to, e.g. '[::]:8080'. */
    local: string;
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
    /** Bound: usable as a callback, e.g. `server.listen(port, mb.sendStarted)`. */
    sendStarted(callback?: unknown): void;
    sendStopped(callback?: unknown): void;
    sendShuttedDown(callback?: unknown): void;
    sendMessage(message: unknown): void;
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
export declare class InappropriateConditionError extends DroverError {
    operation: string;
    status: MasterStatus;
}
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
export declare class ProtocolError extends DroverError {
    workerId: number;
    pid: number;
}
export declare class WorkerFailedError extends DroverError {
    workerId: number;
    pid: number | null;
    failure: { kind: string; [k: string]: unknown };
}
export declare class NotAWorkerError extends DroverError {}
export declare class MessageBusError extends DroverError {}
/** The master could not bind a socket; Node's fields of a failed listen. */
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
