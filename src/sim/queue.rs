//! The steps simulated runs have still to come: one plan per run, and, for runs that move
//! by the clock, one queue of timers ordered by due time (timers due at the same instant
//! in the order they were set).
//!
//! A plan replaced (a cancel) gets a new generation, so the timers of the old one are
//! ignored when they come up. This is bookkeeping only: nothing here applies a step,
//! reads a clock or locks anything; the simulation holds it under its lock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::scenario::{Progression, Step};
use crate::clock::later;

#[derive(Default)]
pub struct Queue {
    plans: HashMap<Arc<str>, Plan>,
    timers: BinaryHeap<Reverse<Timer>>,
    /// How many timers have been set: the order of timers due at the same instant.
    scheduled: u64,
}

/// A simulated run's steps still to come.
struct Plan {
    pending: VecDeque<Step>,
    progression: Progression,
    /// Bumped when the plan is replaced (a cancel), so that older timers are ignored.
    generation: u64,
}

/// A step due by the clock.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    pub due: DateTime<Utc>,
    order: u64,
    pub job_id: Arc<str>,
    generation: u64,
}

/// A run's next step, taken out of its plan to be applied.
#[derive(Debug)]
pub struct Taken {
    pub step: Step,
    pub progression: Progression,
    generation: u64,
}

/// What became of a step that was taken.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// Applied: the next step, if any, is due its `after` past `at`.
    Applied { at: DateTime<Utc> },
    /// Refused: the run's simulation stops.
    Refused,
    /// Not kept by the store: the step goes back, due `after` past `from` if the run
    /// moves by the clock (by polls, the next poll takes it again).
    Deferred {
        from: DateTime<Utc>,
        after: Duration,
    },
}

impl Queue {
    /// Replaces run `job_id`'s plan, and sets a timer for its first step if it moves by
    /// the clock; `true` when it set one.
    pub fn plan(
        &mut self,
        job_id: &Arc<str>,
        pending: VecDeque<Step>,
        progression: Progression,
        from: DateTime<Utc>,
    ) -> bool {
        let generation = self.plans.get(job_id).map_or(0, |plan| plan.generation + 1);
        let first_after = pending.front().map(|step| step.after);
        self.plans.insert(
            Arc::clone(job_id),
            Plan {
                pending,
                progression,
                generation,
            },
        );
        match (progression, first_after) {
            (Progression::Time, Some(after)) => self.schedule(from, after, job_id, generation),
            _ => false,
        }
    }

    /// Takes run `job_id`'s next step out of its plan; `None` when it has no plan, or
    /// nothing left in it (the plan then ends).
    pub fn take(&mut self, job_id: &str) -> Option<Taken> {
        let plan = self.plans.get_mut(job_id)?;
        match plan.pending.pop_front() {
            Some(step) => Some(Taken {
                step,
                progression: plan.progression,
                generation: plan.generation,
            }),
            None => {
                self.plans.remove(job_id);
                None
            }
        }
    }

    /// Records what became of a step [`Queue::take`] gave: the plan goes on (its next
    /// step scheduled by the clock if it moves by it), ends, or takes the step back.
    /// `false`, and nothing done, when the plan was replaced or ended meanwhile.
    pub fn settle(&mut self, job_id: &Arc<str>, taken: Taken, outcome: Outcome) -> bool {
        let Some(plan) = self.plans.get_mut(job_id) else {
            return false;
        };
        if plan.generation != taken.generation {
            return false; // re-planned meanwhile (a cancel): its own timer is set
        }
        let by_time = taken.progression == Progression::Time;
        match outcome {
            Outcome::Deferred { from, after } => {
                plan.pending.push_front(taken.step);
                if by_time {
                    self.schedule(from, after, job_id, taken.generation);
                }
            }
            Outcome::Refused => {
                self.plans.remove(job_id);
            }
            Outcome::Applied { at } => match plan.pending.front().map(|step| step.after) {
                None => {
                    self.plans.remove(job_id);
                }
                Some(after) if by_time => {
                    self.schedule(at, after, job_id, taken.generation);
                }
                Some(_) => {}
            },
        }
        true
    }

    /// Ends run `job_id`'s plan, if it has one.
    pub fn end(&mut self, job_id: &str) {
        self.plans.remove(job_id);
    }

    /// Ends every plan.
    pub fn clear(&mut self) {
        self.plans.clear();
        self.timers.clear();
    }

    /// Of `job_ids`, the runs that move by polls.
    pub fn polled<'a>(&self, job_ids: impl IntoIterator<Item = &'a str>) -> Vec<Arc<str>> {
        if !self
            .plans
            .values()
            .any(|plan| plan.progression == Progression::Polls)
        {
            return Vec::new();
        }
        job_ids
            .into_iter()
            .filter_map(|id| self.plans.get_key_value(id))
            .filter(|(_, plan)| plan.progression == Progression::Polls)
            .map(|(id, _)| Arc::clone(id))
            .collect()
    }

    /// Every run that moves by polls.
    pub fn all_polled(&self) -> Vec<Arc<str>> {
        self.plans
            .iter()
            .filter(|(_, plan)| plan.progression == Progression::Polls)
            .map(|(id, _)| Arc::clone(id))
            .collect()
    }

    /// The earliest timer due by `until` whose plan is still current, taken out.
    pub fn pop_due(&mut self, until: DateTime<Utc>) -> Option<Timer> {
        while let Some(Reverse(timer)) = self.timers.peek() {
            if timer.due > until {
                return None;
            }
            let Reverse(timer) = self.timers.pop()?;
            let current = self
                .plans
                .get(&timer.job_id)
                .is_some_and(|plan| plan.generation == timer.generation);
            if current {
                return Some(timer);
            }
        }
        None
    }

    /// When the earliest timer is due.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.timers.peek().map(|Reverse(timer)| timer.due)
    }

    /// Sets run `job_id`'s next step due `after` the time `from`; `true` when it set it.
    /// A step that would be due past the end of time is never set: no clock can get
    /// there (a launch refuses such a plan, and a cancel's step is kept within it), so
    /// the plan ends.
    fn schedule(
        &mut self,
        from: DateTime<Utc>,
        after: Duration,
        job_id: &Arc<str>,
        generation: u64,
    ) -> bool {
        let Some(due) = later(from, after) else {
            tracing::warn!(job_id = %job_id, "a simulated step would be due past the end of time; it never comes");
            self.plans.remove(job_id);
            return false;
        };
        self.scheduled += 1;
        self.timers.push(Reverse(Timer {
            due,
            order: self.scheduled,
            job_id: Arc::clone(job_id),
            generation,
        }));
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::clock::END_OF_TIME;
    use crate::model::JobState;

    fn step(state: JobState, millis: u64) -> Step {
        Step {
            state,
            after: Duration::from_millis(millis),
            result: None,
        }
    }

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + millis).unwrap()
    }

    fn id(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn timers_come_due_in_time_order_then_in_the_order_set() {
        let mut queue = Queue::default();
        let (a, b, c) = (id("a"), id("b"), id("c"));
        assert!(queue.plan(
            &a,
            [step(JobState::Running, 300)].into(),
            Progression::Time,
            at(0)
        ));
        assert!(queue.plan(
            &b,
            [step(JobState::Running, 100)].into(),
            Progression::Time,
            at(0)
        ));
        assert!(queue.plan(
            &c,
            [step(JobState::Running, 100)].into(),
            Progression::Time,
            at(0)
        ));
        assert_eq!(queue.next_due(), Some(at(100)));
        assert!(queue.pop_due(at(99)).is_none());
        let due: Vec<Arc<str>> = std::iter::from_fn(|| queue.pop_due(at(300)))
            .map(|timer| timer.job_id)
            .collect();
        assert_eq!(due, [b, c, a]);
        assert_eq!(queue.next_due(), None);
    }

    #[test]
    fn a_replaced_plan_ignores_the_old_plans_timers() {
        let mut queue = Queue::default();
        let run = id("run");
        let plan = [step(JobState::Running, 100), step(JobState::Finished, 100)];
        queue.plan(&run, plan.into(), Progression::Time, at(0));
        let taken = queue.take(&run).unwrap();
        // A cancel replaces the plan while the step is being applied.
        queue.plan(
            &run,
            [step(JobState::Cancelled, 50)].into(),
            Progression::Time,
            at(10),
        );
        assert!(!queue.settle(&run, taken, Outcome::Applied { at: at(100) }));
        // The first plan's timer (at 100) is stale; the cancel's (at 60) comes.
        let timer = queue.pop_due(at(1000)).unwrap();
        assert_eq!(timer.due, at(60));
        assert!(queue.pop_due(at(1000)).is_none());
        assert_eq!(queue.take(&run).unwrap().step.state, JobState::Cancelled);
    }

    #[test]
    fn each_applied_step_schedules_the_next_and_the_last_ends_the_plan() {
        let mut queue = Queue::default();
        let run = id("run");
        let plan = [step(JobState::Running, 100), step(JobState::Finished, 250)];
        queue.plan(&run, plan.into(), Progression::Time, at(0));
        let timer = queue.pop_due(at(100)).unwrap();
        let taken = queue.take(&timer.job_id).unwrap();
        assert!(queue.settle(&run, taken, Outcome::Applied { at: timer.due }));
        assert_eq!(queue.next_due(), Some(at(350)));
        let taken = queue.take(&run).unwrap();
        assert!(queue.settle(&run, taken, Outcome::Applied { at: at(350) }));
        assert!(queue.take(&run).is_none(), "the plan has ended");
    }

    #[test]
    fn a_deferred_step_goes_back_and_a_refused_one_ends_the_plan() {
        let mut queue = Queue::default();
        let run = id("run");
        queue.plan(
            &run,
            [step(JobState::Running, 0)].into(),
            Progression::Time,
            at(0),
        );
        queue.pop_due(at(0)).unwrap();
        let taken = queue.take(&run).unwrap();
        let deferred = Outcome::Deferred {
            from: at(5),
            after: Duration::from_secs(1),
        };
        assert!(queue.settle(&run, taken, deferred));
        assert_eq!(queue.pop_due(at(2000)).unwrap().due, at(1005));
        let taken = queue.take(&run).unwrap();
        assert_eq!(taken.step.state, JobState::Running, "the same step again");
        assert!(queue.settle(&run, taken, Outcome::Refused));
        assert!(queue.take(&run).is_none());
    }

    #[test]
    fn runs_that_move_by_polls_have_no_timers_and_are_found_by_polls() {
        let mut queue = Queue::default();
        let (polled, timed) = (id("polled"), id("timed"));
        assert!(!queue.plan(
            &polled,
            [step(JobState::Running, 0)].into(),
            Progression::Polls,
            at(0)
        ));
        queue.plan(
            &timed,
            [step(JobState::Running, 10)].into(),
            Progression::Time,
            at(0),
        );
        assert_eq!(
            queue.polled(["polled", "timed", "other"]),
            ["polled".into()]
        );
        assert_eq!(queue.all_polled(), ["polled".into()]);
        queue.end(&polled);
        assert!(queue.polled(["polled"]).is_empty());
        assert_eq!(queue.pop_due(at(10)).unwrap().job_id, timed);
    }

    #[test]
    fn a_step_due_past_the_end_of_time_is_never_set_and_ends_the_plan() {
        let mut queue = Queue::default();
        let run = id("run");
        let plan = [step(JobState::Running, 2)];
        let near_the_end = END_OF_TIME - chrono::TimeDelta::milliseconds(1);
        assert!(!queue.plan(&run, plan.into(), Progression::Time, near_the_end));
        assert!(queue.next_due().is_none());
        assert!(queue.take(&run).is_none());
    }
}
