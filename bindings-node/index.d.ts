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

export declare class MessageBus extends EventEmitter<MessageBusEvents> {
    /** Throws NotAWorkerError outside a process started by a drover master. */
    constructor();
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
