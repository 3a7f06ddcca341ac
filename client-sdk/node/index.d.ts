// Types of the ringside npm package (libringside over koffi).  Guide: docs/sdk.md ("Node").

/// <reference types="node" />

export type StatusName = 'idle' | 'working' | 'stuck' | 'failed' | 'completed' | 'cancelled';
export type Outcome = 'completed' | 'failed' | 'cancelled';
export type StreamName = 'stdout' | 'stderr';

export const STATUS: Readonly<Record<StatusName, number>>;

export interface AgentOptions {
  /** 1-63 characters from [A-Za-z0-9._:@-]. */
  agentId: string;
  projectId: string;
  owner?: string;
  /** Ring directory; default $RINGSIDE_SHM_DIR, else /dev/shm/ringside. */
  shmDir?: string;
  /** Throw when the sidecar is missing or behind (default: never; calls return false). */
  strict?: boolean;
  /** false: reserve no terminal rings (status and progress only; a small ring). */
  terminal?: boolean;
  maxTasks?: number;
  termRings?: number;
  termRingBytes?: number;
  logSlots?: number;
}

export interface Stats {
  events_published: number;
  events_dropped: number;
  progress_updates: number;
  term_bytes_written: number;
  term_bytes_dropped: number;
  wakeups: number;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** The child's stdin; default 'ignore'. */
  stdin?: 'ignore' | 'inherit' | 'pipe';
  /** Milliseconds after which the child's process group gets killSignal, then SIGKILL after
   *  killGrace; run() then rejects with TimeoutExpired. */
  timeout?: number;
  /** Default SIGTERM (also sent to the group on abort). */
  killSignal?: NodeJS.Signals | number;
  /** Milliseconds between killSignal and SIGKILL; default 2000. */
  killGrace?: number;
  signal?: AbortSignal;
  /** Also return the output in stdout / stderr. */
  capture?: boolean;
}

export interface RunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout?: Buffer;
  stderr?: Buffer;
}

/**
 * Returns true when published; false when the event was not (no sidecar directory, ring full,
 * agent closed) and the agent is not strict.
 */
export class Agent {
  constructor(options: AgentOptions);
  readonly agentId: string;
  readonly projectId: string;
  readonly strict: boolean;
  /** True while a ring is open. */
  readonly connected: boolean;
  status(status: StatusName, detail?: string | null): boolean;
  task(taskId: string, title?: string | null): Task;
  /** Ends the task: completed when fn resolves, failed when it throws (cancelled: AbortError). */
  withTask<T>(taskId: string, title: string | null | undefined,
              fn: (task: Task) => T | Promise<T>): Promise<T>;
  /** Runs a command as a task; ends it with the command's outcome. */
  run(taskId: string, command: string, args?: readonly string[],
      options?: RunOptions & { title?: string }): Promise<RunResult>;
  stats(): Stats | Record<string, never>;
  close(): void;
  [Symbol.dispose](): void;
}

export class Task {
  readonly agent: Agent;
  readonly taskId: string;
  readonly ended: boolean;
  /** Started in the ring (false when the agent is unobserved). */
  readonly live: boolean;
  readonly lastExit: RunResult | null;
  /** Strict agents: the task started but its start event was dropped (ring full); a warning
   *  RINGSIDE_EVENT_DROPPED was emitted instead of throwing. */
  readonly startDropped: boolean;
  progress(step: number, total?: number, message?: string | null): boolean;
  write(data: string | Uint8Array, stream?: StreamName): boolean;
  end(outcome?: Outcome, exitCode?: number): boolean;
  run(command: string, args?: readonly string[], options?: RunOptions): Promise<RunResult>;
}

export function strerror(code: number): string;
export function version(): string;
export function libraryPath(): string;
/** [outcome, exit code] of a child's exit (128+N for signal N; SIGINT/SIGTERM cancel). */
export function outcomeOf(exitCode: number | null, signal: NodeJS.Signals | null): [Outcome, number];

export class RingsideError extends Error {
  /** The RS_E* code (negative). */
  readonly code: number;
}
export class InvalidArgument extends RingsideError {}
export class OutOfMemory extends RingsideError {}
export class ShmUnavailable extends RingsideError {}
export class RingFull extends RingsideError {}
export class Closed extends RingsideError {}
export class TooManyTasks extends RingsideError {}
export class NoSuchTask extends RingsideError {}
export class TaskExists extends RingsideError {}
export class SystemCallFailed extends RingsideError {}
/** task.run()'s command outlived options.timeout; its process group was killed. */
export class TimeoutExpired extends Error {
  readonly code: 'ETIMEDOUT';
  readonly timeout: number;
  /** The killed command's result (signal, captured output). */
  readonly result: RunResult;
}
export const ERRORS: Readonly<Record<number, typeof RingsideError>>;
